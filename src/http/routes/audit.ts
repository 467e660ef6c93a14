import { Hono } from 'hono';
import { z } from 'zod';
import { decodeAuditCursor, listAudit } from '../../store/audit.repo.ts';
import type { Db } from '../../store/db.ts';
import { classifyDbError } from '../../store/errors.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, errors } from '../errors.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requireScope } from '../middleware/auth.ts';

export interface AuditRoutesDeps {
  db: Db;
  keys: KeyResolver;
}

/** RFC 3339 with a zone (`Z` or an offset), as the entries' `at` is written. */
const isoDate = z.iso.datetime({ offset: true }).transform((s) => new Date(s));

const auditQuery = z.strictObject({
  keyId: z.string().min(1).max(128).optional(),
  action: z
    .string()
    .regex(/^[a-z0-9.-]{1,128}$/, 'must be an action name such as keys.create')
    .optional(),
  from: isoDate.optional(),
  to: isoDate.optional(),
  limit: z.coerce.number().int().min(1).max(1_000).default(100),
  cursor: z.string().max(200).optional(),
});

function invalidQuery(details: { path: string; code: string; message: string }[]): ApiError {
  return new ApiError('invalid_query', 400, 'invalid query parameters', { details });
}

/** `GET /v1/admin/audit`: the audit log, newest first, with keyset pagination. */
export function auditRoutes(deps: AuditRoutesDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get('/v1/admin/audit', requireScope(deps.keys, 'admin'), async (c) => {
    const parsed = auditQuery.safeParse(c.req.query());
    if (!parsed.success) {
      throw invalidQuery(
        parsed.error.issues.map((i) => ({ path: i.path.join('.'), code: i.code, message: i.message })),
      );
    }
    const { cursor, ...q } = parsed.data;
    const beforeId = cursor === undefined ? undefined : decodeAuditCursor(cursor);
    if (cursor !== undefined && beforeId === undefined) {
      throw invalidQuery([
        { path: 'cursor', code: 'invalid_cursor', message: 'not a cursor returned by this API' },
      ]);
    }
    try {
      const page = await listAudit(deps.db, beforeId === undefined ? q : { ...q, beforeId });
      return c.json({ entries: page.entries, nextCursor: page.nextCursor ?? null });
    } catch (err) {
      if (classifyDbError(err) === 'unavailable') throw errors.databaseUnavailable();
      throw err;
    }
  });

  return app;
}
