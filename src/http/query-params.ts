import { z } from '@hono/zod-openapi';
import { parseRfc3339 } from '../events/rfc3339.ts';

/**
 * A date-time query parameter: RFC 3339 with a zone, years 0001–9999 (`rfc3339.ts`), as a
 * Date. Anything else is the route's `400`, never a date PostgreSQL cannot hold (a `500`) or
 * one `Date.parse` guessed at.
 */
export const dateTimeParam = () =>
  z
    .string()
    .transform((s, ctx) => {
      const ms = parseRfc3339(s);
      if (ms === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: 'must be an RFC 3339 date-time with a zone (e.g. 2026-01-02T03:04:05Z), years 0001–9999',
        });
        return z.NEVER;
      }
      return new Date(ms);
    })
    .openapi({ type: 'string', format: 'date-time' });
