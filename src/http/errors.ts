import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
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

/** Writes an ApiError as the contract's error body. */
export function errorResponse(c: Context, err: ApiError): Response {
  if (err.retryAfter !== undefined) c.header('Retry-After', String(err.retryAfter));
  const body: Record<string, unknown> = { code: err.code, message: err.message };
  if (err.details) body.details = err.details;
  const requestId = c.get('requestId' as never) as string | undefined;
  if (requestId) body.requestId = requestId;
  return c.json({ error: body }, err.status);
}

export const errors = {
  invalidJson: (message = 'body is not valid JSON') => new ApiError('invalid_json', 400, message),
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
};

/** Runs a database call for a route: an unreachable database becomes `503 database_unavailable`. */
export async function withDb<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (classifyDbError(err) === 'unavailable') throw errors.databaseUnavailable();
    throw err;
  }
}
