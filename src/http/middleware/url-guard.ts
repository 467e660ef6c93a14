import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env.ts';
import { ApiError, type ErrorDetail } from '../errors.ts';

const NUL_MESSAGE = 'NUL (%00) is not allowed';

/**
 * Refuses a NUL (`%00`) anywhere in the path or the query, on every route, before anything
 * reads them: PostgreSQL cannot store or compare it in text, and a NUL in a subject id or a
 * key id would otherwise reach a query as a 500. A request line cannot carry a raw NUL
 * (Node refuses it), so `%00` in the URL as sent is the only way one arrives; that check is
 * one substring search, and the details are worked out only for the refusal.
 * `400 invalid_query` for the query, `400 invalid_request` for the path.
 */
export function refuseNul(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const url = c.req.url;
    if (!url.includes('%00')) return next();
    const queryAt = url.indexOf('?');
    const query = queryAt === -1 ? '' : url.slice(queryAt);
    if (query.includes('%00')) {
      const details: ErrorDetail[] = [];
      for (const [name, value] of new URLSearchParams(query)) {
        if (name.includes('\u0000') || value.includes('\u0000')) {
          details.push({ path: name, code: 'nul_character', message: NUL_MESSAGE });
        }
      }
      throw new ApiError('invalid_query', 400, `invalid query parameters: ${NUL_MESSAGE}`, { details });
    }
    throw new ApiError('invalid_request', 400, `invalid path: ${NUL_MESSAGE}`, {
      details: [{ path: 'path', code: 'nul_character', message: NUL_MESSAGE }],
    });
  };
}
