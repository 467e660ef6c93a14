import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { z } from 'zod';
import { BufferFullError, BufferUnavailableError } from '../buffer/errors.ts';
import { classifyDbError } from '../store/errors.ts';

export interface ErrorDetail {
  path?: string;
  code?: string;
  message: string;
  index?: number;
}

/** Every refusal the API answers with: `{"error":{"code","message","details?","requestId"}}`. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly code: string;
  readonly status: ContentfulStatusCode;
  readonly details: ErrorDetail[] | undefined;
  /** Seconds, sent as Retry-After. */
  readonly retryAfter: number | undefined;

  constructor(
    code: string,
    status: ContentfulStatusCode,
    message: string,
    opts: { details?: ErrorDetail[]; retryAfter?: number } = {},
  ) {
    super(message);
    this.code = code;
    this.status = status;
    this.details = opts.details;
    this.retryAfter = opts.retryAfter;
  }
}

/** The contract's error body of an ApiError: `{"error":{"code","message","details?","requestId?"}}`. */
export function errorBody(err: ApiError, requestId: string | undefined): { error: Record<string, unknown> } {
  const body: Record<string, unknown> = { code: err.code, message: err.message };
  if (err.details) body.details = err.details;
  if (requestId) body.requestId = requestId;
  return { error: body };
}

/** Writes an ApiError as the contract's error body. */
export function errorResponse(c: Context, err: ApiError): Response {
  if (err.retryAfter !== undefined) c.header('Retry-After', String(err.retryAfter));
  return c.json(errorBody(err, c.get('requestId' as never) as string | undefined), err.status);
}

export const errors = {
  invalidJson: (message = 'body is not valid JSON') => new ApiError('invalid_json', 400, message),
  invalidUtf8: () => new ApiError('invalid_utf8', 400, 'body is not valid UTF-8'),
  incompleteBody: () =>
    new ApiError('incomplete_body', 400, 'the connection closed before the whole body arrived'),
  payloadTooLarge: (limit: number) =>
    new ApiError('payload_too_large', 413, `body is larger than ${limit} bytes (after decompression)`),
  unsupportedMediaType: (message: string) => new ApiError('unsupported_media_type', 415, message),
  backpressure: () => new ApiError('backpressure', 429, 'the buffer is full; retry later', { retryAfter: 1 }),
  bufferUnavailable: () =>
    new ApiError('buffer_unavailable', 503, 'the buffer (Redis) is unavailable; retry later', {
      retryAfter: 1,
    }),
  databaseUnavailable: () =>
    new ApiError('database_unavailable', 503, 'the database is unavailable; retry later', { retryAfter: 5 }),
  authUnavailable: () =>
    new ApiError('auth_unavailable', 503, 'cannot verify the API key right now; retry later', {
      retryAfter: 5,
    }),
  internal: () => new ApiError('internal', 500, 'internal error'),
  /** A cursor this API did not hand out: tampered, truncated, or from another listing. */
  invalidCursor: () =>
    new ApiError('invalid_cursor', 400, 'cursor is not one this API returned', {
      details: [{ path: 'cursor', code: 'invalid_cursor', message: 'not a cursor returned by this API' }],
    }),
};

/** Zod issues as the error body's `details`: dotted path, zod's code, message. */
export function zodDetails(issues: readonly z.core.$ZodIssue[]): ErrorDetail[] {
  return issues.map((i) => ({ path: i.path.map(String).join('.'), code: i.code, message: i.message }));
}

/** The code and message of a route's `400` when zod refuses its input. */
export interface InvalidInput {
  code: string;
  message: string;
}

/** What a refused query, path or body is called when the route names nothing else. */
export const INVALID_INPUT = {
  query: { code: 'invalid_query', message: 'invalid query parameters' },
  param: { code: 'invalid_request', message: 'invalid path parameters' },
  json: { code: 'invalid_request', message: 'invalid request body' },
} as const satisfies Record<string, InvalidInput>;

/**
 * Any error as the ApiError the client gets: an ApiError as it is, a ZodError as `400` with
 * the code and message the route named (`invalidInput` in the context, see
 * `openapi.ts`), anything else as `500 internal` (a bug, or a data error: never a 503,
 * which would invite a retry that cannot help).
 */
export function toApiError(err: unknown, c: Context): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof z.core.$ZodError) {
    const named = c.get('invalidInput' as never) as InvalidInput | undefined;
    const { code, message } = named ?? INVALID_INPUT.json;
    return new ApiError(code, 400, message, { details: zodDetails(err.issues) });
  }
  return errors.internal();
}

/**
 * ioredis's own messages for a connection that is closed, not ready or too slow: they come
 * as plain Errors, without a class or code to tell them by.
 */
const REDIS_DOWN =
  /^(Connection is closed\.|Stream isn't writeable|Cluster isn't ready|Cluster is disconnect|Node is disconnected|Command timed out|Socket timeout|None of startup nodes is available|Failed to refresh slots cache)/;
/** Redis replies that say "not now" (loading, failing over, read-only replica), not "never". */
const REDIS_BUSY_REPLY = /^(LOADING|READONLY|CLUSTERDOWN|MASTERDOWN|TRYAGAIN|NOREPLICAS|BUSY)\b/;
/** ioredis's error classes for a request it gave up on (from redis-errors and its own). */
const REDIS_GAVE_UP = new Set([
  'AbortError',
  'InterruptError',
  'MaxRetriesPerRequestError',
  'ClusterAllFailedError',
]);

/**
 * How the buffer (Redis) failed, when `err` comes from it: `full` (out of memory: the
 * client should slow down), `unavailable` (not reachable, not ready or too slow: retry
 * later), or undefined for anything else (a reply error that is a bug, a non-Redis error).
 */
export function bufferFailure(err: unknown): 'full' | 'unavailable' | undefined {
  if (err instanceof BufferFullError) return 'full';
  if (err instanceof BufferUnavailableError) return 'unavailable';
  if (!(err instanceof Error)) return undefined;
  if (err.name === 'ReplyError') {
    if (err.message.startsWith('OOM')) return 'full';
    return REDIS_BUSY_REPLY.test(err.message) ? 'unavailable' : undefined;
  }
  if (REDIS_GAVE_UP.has(err.name) || REDIS_DOWN.test(err.message)) return 'unavailable';
  return undefined;
}

/**
 * The driver's own error: drizzle wraps pg's in a `DrizzleQueryError` whose message is the
 * SQL text (no SQLSTATE), with pg's error as its `cause`.
 */
function rootCause(err: unknown): unknown {
  let e = err;
  for (let depth = 0; depth < 5 && e instanceof Error && e.cause !== undefined; depth++) e = e.cause;
  return e;
}

/**
 * Runs a route's database call: an unreachable database becomes `503
 * database_unavailable` (or `unavailable()`); anything else (a data error, a bug) goes on to
 * `app.onError` as `500 internal`. A Redis error is never taken for a database one.
 */
export async function withDb<T>(fn: () => Promise<T>, unavailable = errors.databaseUnavailable): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const cause = rootCause(err);
    if (err instanceof ApiError || bufferFailure(err) !== undefined || bufferFailure(cause) !== undefined) {
      throw err;
    }
    if (classifyDbError(cause) === 'unavailable') throw unavailable();
    throw err;
  }
}

/**
 * Runs a route's buffer (Redis) call: a full buffer becomes `429 backpressure`, an
 * unreachable one `503 buffer_unavailable`; anything else goes on to `app.onError`.
 */
export async function withBuffer<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const failure = bufferFailure(err);
    if (failure === 'full') throw errors.backpressure();
    if (failure === 'unavailable') throw errors.bufferUnavailable();
    throw err;
  }
}
