import type { IncomingMessage, ServerResponse } from 'node:http';
import { context } from '@opentelemetry/api';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { AppDeps } from './app.ts';
import { ApiError, errorBody, errors } from './errors.ts';
import type { Principal } from './key-resolver.ts';
import { newLiveRequest } from './live-request.ts';
import { clientIpOf } from './middleware/audit.ts';
import { checkScope, presentedKey, principalFor } from './middleware/auth.ts';
import type { Listener } from './middleware/listener.ts';
import { limitOf, rateLimitHeaders, spendEventsOf } from './middleware/rate-limit.ts';
import { requestRecorder } from './middleware/request-context.ts';
import { apiSecurityHeaderList } from './middleware/security-headers.ts';
import { type IngestCall, ingestHandlers } from './routes/events.ts';

/**
 * Serves a request straight from Node when it can, answering true; false leaves it to the
 * Hono app. `listener` is the listener it came in on when ADMIN_PORT splits them.
 */
export type FastPath = (req: IncomingMessage, res: ServerResponse, listener: Listener | undefined) => boolean;

type Route = '/v1/events' | '/v1/events/batch';

/**
 * The two native ingest routes, `POST /v1/events` and `POST /v1/events/batch`, served from
 * Node's request and response without the Hono app: no web `Request`, `Headers` or
 * `Response` per request, headers read as Node parsed them, the response headers written
 * once. What the client gets is what the app answers — the same handlers
 * (`ingestHandlers`), authentication, rate limit, scope check, error bodies, live records,
 * request id, security headers, access-log line, duration sample and span; the ingest
 * parity test holds the two answers equal case by case.
 *
 * Only the plain case is served here: a path with a query string, a request on the admin
 * listener, and a cross-origin request while CORS is configured go to the app.
 */
export function createIngestFastPath(deps: AppDeps): FastPath {
  const { config, logger, keys, rateLimiter, live: hub } = deps;
  const handlers = ingestHandlers(deps);
  const recorder = requestRecorder(logger, deps.metrics);
  // What every answer carries, as the flat list writeHead takes (no per-header setHeader).
  const fixed = [
    ...apiSecurityHeaderList(config.TLS_CERT_FILE !== undefined).flat(),
    'content-type',
    'application/json',
  ];
  const cors = config.CORS_ORIGINS.length > 0;
  const defaultPerMinute = config.DEFAULT_KEY_RATE_LIMIT ?? config.DEFAULT_RATE_LIMIT_PER_MINUTE;

  return (req, res, listener) => {
    const route = req.url;
    if (req.method !== 'POST' || (route !== '/v1/events' && route !== '/v1/events/batch')) return false;
    if (listener === 'admin' || (cors && req.headers.origin !== undefined)) return false;
    serve(req, res, route).catch((err: unknown) => {
      // Past the answer (a socket that failed while being written to): nothing more to send.
      logger.error({ err }, 'unhandled error');
      res.destroy();
    });
    return true;
  };

  async function serve(req: IncomingMessage, res: ServerResponse, route: Route): Promise<void> {
    const record = recorder.begin(req.headers, 'POST');
    const { requestId } = record;
    const headers = [...fixed, 'x-request-id', requestId];
    let principal: Principal | undefined;
    let call: IngestCall | undefined;
    let status: ContentfulStatusCode = 202;
    let body: unknown;
    try {
      body = await context.with(record.context, async () => {
        const header = (name: string) => headerOf(req, name);
        principal = await principalFor(
          keys,
          presentedKey(header),
          clientIpOf(config.TRUST_PROXY ? header('x-forwarded-for') : undefined, req.socket.remoteAddress),
        );
        checkScope(principal, 'ingest');
        const perMinute = rateLimiter ? limitOf(principal, defaultPerMinute) : undefined;
        const keyId = principal.keyId;
        call = {
          principal,
          source: { header, incoming: req, web: () => null },
          live: hub?.active ? newLiveRequest(hub, route, requestId, principal) : undefined,
          spend:
            rateLimiter && perMinute !== undefined
              ? (n) =>
                  spendEventsOf(rateLimiter, keyId, perMinute, n, (d) => {
                    for (const [name, value] of rateLimitHeaders(d)) headers.push(name, value);
                  })
              : async () => {},
        };
        return route === '/v1/events' ? handlers.one(call) : handlers.batch(call);
      });
    } catch (err) {
      const answer = err instanceof ApiError ? err : errors.internal();
      if (!(err instanceof ApiError)) logger.child({ requestId }).error({ err }, 'unhandled error');
      // An ingest request refused as a whole is one `refused` live record (publishRefusedRequest).
      if (hub?.active) {
        const live = call?.live ?? newLiveRequest(hub, route, requestId, principal);
        if (!live.published) live.refusedRequest(answer);
      }
      if (answer.retryAfter !== undefined) headers.push('Retry-After', String(answer.retryAfter));
      status = answer.status;
      body = errorBody(answer, requestId);
    }
    const text = JSON.stringify(body);
    headers.push('content-length', String(Buffer.byteLength(text)));
    res.writeHead(status, headers);
    res.end(text);
    if (!req.readableEnded) res.once('finish', () => drainUnread(req));
    recorder.end(record, 'POST', route, status);
  }
}

/** How long, and how much, the rest of a body answered before it was read is read and dropped. */
const DRAIN_MS = 500;
const DRAIN_MAX_BYTES = 64 * 1024 * 1024;

/**
 * A request answered before its body was read (a 413 for its declared length, a 401 before
 * the body came): its rest is read and dropped, so the connection can carry the next
 * request, for at most DRAIN_MS and DRAIN_MAX_BYTES; then the connection is closed. What
 * @hono/node-server does for the app's answers, so both paths leave a connection alike.
 */
function drainUnread(req: IncomingMessage): void {
  if (req.destroyed) return;
  let bytes = 0;
  const done = () => {
    clearTimeout(timer);
    req.off('data', onData);
    req.off('end', done);
    req.off('error', done);
  };
  const close = () => {
    done();
    if (!req.socket.destroyed) req.socket.destroySoon();
  };
  const onData = (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes > DRAIN_MAX_BYTES) close();
  };
  const timer = setTimeout(close, DRAIN_MS);
  timer.unref();
  req.on('data', onData);
  req.on('end', done);
  req.on('error', done);
  req.resume();
}

/** A request header as one string (Node joins repeated ones, as `Headers.get` does), or undefined. */
function headerOf(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}
