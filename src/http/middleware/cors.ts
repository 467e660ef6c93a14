import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env.ts';
import { CORS_PATHS } from '../segment-body.ts';

const ALLOW_HEADERS = 'Authorization, Content-Type, Content-Encoding, X-Api-Key, X-Request-Id';
/** What a page's script may read of a response: when to retry, and the request's id. */
const EXPOSE_HEADERS = 'Retry-After, X-Request-Id, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset';
const MAX_AGE_S = '600';

/**
 * CORS on the ingest routes (and their dry run) for the listed origins (`CORS_ORIGINS`; `*` for any): a
 * preflight is answered `204` here, before authentication (a browser sends no key with
 * it); an actual request gets `Access-Control-Allow-Origin` on whatever it is answered,
 * errors included, so the page can read a 429's Retry-After. Credentials are never allowed:
 * keys travel in headers or the body, never in cookies. An origin not listed gets no CORS
 * header (the browser then refuses to hand the page the response); no origin listed, the
 * middleware is not mounted at all.
 */
export function ingestCors(origins: readonly string[]): MiddlewareHandler<AppEnv> {
  const any = origins.includes('*');
  const listed = new Set(origins);
  return async (c, next) => {
    if (!CORS_PATHS.has(c.req.path)) return next();
    const origin = c.req.header('origin');
    if (!origin || !(any || listed.has(origin))) return next();
    const allowOrigin = any ? '*' : origin;
    if (c.req.method === 'OPTIONS' && c.req.header('access-control-request-method')) {
      const headers: Record<string, string> = {
        'Access-Control-Allow-Origin': allowOrigin,
        'Access-Control-Allow-Methods': 'POST',
        'Access-Control-Allow-Headers': ALLOW_HEADERS,
        'Access-Control-Max-Age': MAX_AGE_S,
      };
      if (!any) headers.Vary = 'Origin';
      return c.body(null, 204, headers);
    }
    // On Node's response, so the headers survive whatever response the route builds (errors too).
    const outgoing = c.env?.outgoing;
    const set = (name: string, value: string) => {
      if (outgoing) outgoing.setHeader(name, value);
      else c.header(name, value);
    };
    set('Access-Control-Allow-Origin', allowOrigin);
    set('Access-Control-Expose-Headers', EXPOSE_HEADERS);
    if (!any) set('Vary', 'Origin');
    await next();
  };
}
