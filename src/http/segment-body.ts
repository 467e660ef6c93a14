import type { Context, MiddlewareHandler } from 'hono';
import { SEGMENT_LIMITS, type SegmentCallType } from '../events/segment.ts';
import { mediaType, parseJson, readBody } from './body.ts';
import type { AppEnv } from './env.ts';
import { ApiError, errors } from './errors.ts';
import { presentedKey } from './middleware/auth.ts';

/** The Segment-compatible routes (ARCHITECTURE §12): the call type each takes, or a batch. */
export const SEGMENT_PATHS: ReadonlyMap<string, SegmentCallType | 'batch'> = new Map([
  ['/v1/batch', 'batch'],
  ['/v1/import', 'batch'],
  ['/v1/track', 'track'],
  ['/v1/identify', 'identify'],
  ['/v1/page', 'page'],
  ['/v1/screen', 'screen'],
  ['/v1/group', 'group'],
  ['/v1/alias', 'alias'],
]);

/**
 * Every route that ingests events, native and Segment: their rate limit counts events
 * (ARCHITECTURE §11) and browsers may call them with CORS (`CORS_ORIGINS`).
 */
export const INGEST_PATHS: ReadonlySet<string> = new Set([
  '/v1/events',
  '/v1/events/batch',
  ...SEGMENT_PATHS.keys(),
]);

/** The dry run of ingest (ARCHITECTURE §13): it buffers nothing, so its rate limit counts requests. */
export const VALIDATE_PATH = '/v1/events/validate';

/** What a browser page may call when CORS_ORIGINS lists it: every ingest route, and its dry run. */
export const CORS_PATHS: ReadonlySet<string> = new Set([...INGEST_PATHS, VALIDATE_PATH]);

/**
 * Media types a Segment body arrives with, always holding JSON: `text/plain` is what
 * `navigator.sendBeacon` sends a string as, and `application/x-www-form-urlencoded` what
 * RudderStack's Node SDK sends its gzipped batches as (axios's default for a Buffer).
 */
const READABLE_TYPES: ReadonlySet<string> = new Set([
  'application/json',
  'text/plain',
  'application/x-www-form-urlencoded',
]);

export function readableType(c: Context<AppEnv>): boolean {
  const type = mediaType(c);
  return READABLE_TYPES.has(type) || type.endsWith('+json');
}

/**
 * A Segment request's body as an object: JSON under one of {@link READABLE_TYPES}, gzipped
 * or not, at most 500 KB before and after decompression. `415` for another type, `413` when
 * larger, `400` when it is not a JSON object.
 */
export async function readSegmentBody(c: Context<AppEnv>): Promise<Record<string, unknown>> {
  if (!readableType(c))
    throw errors.unsupportedMediaType('Content-Type must be application/json (or text/plain) holding JSON');
  const body = parseJson(await readBody(c, SEGMENT_LIMITS.maxRequestBytes));
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ApiError('invalid_request', 400, 'body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

/**
 * On the Segment routes, when no header carries a key: reads the body before
 * authentication (it is read once: the route takes it from `segmentBody`) and presents its
 * `writeKey` as the key (`bodyKey`). Mounted ahead of `authenticate`, so `/v1/*`
 * authenticates and counts the request once, as for any other route.
 */
export function segmentBodyKey(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (c.req.method !== 'POST' || !SEGMENT_PATHS.has(c.req.path)) return next();
    // A key in a header, or a body that cannot hold one: authentication decides (401 first).
    if (presentedKey((n) => c.req.header(n)) !== undefined || !readableType(c)) return next();
    const body = await readSegmentBody(c);
    c.set('segmentBody', body);
    if (typeof body.writeKey === 'string' && body.writeKey.trim() !== '')
      c.set('bodyKey', body.writeKey.trim());
    await next();
  };
}
