import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { decodeAuditCursor, listAudit } from '../../store/audit.repo.ts';
import type { Db } from '../../store/db.ts';
import type { AppEnv } from '../env.ts';
import { errors, withDb } from '../errors.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requireScope } from '../middleware/auth.ts';
import { createRouter, errorResponses, json, needs, V1_ERRORS } from '../openapi.ts';
import { dateTimeParam } from '../query-params.ts';

export interface AuditRoutesDeps {
  db: Db;
  keys: KeyResolver;
}

/** RFC 3339 with a zone (`Z` or an offset), as the entries' `at` is written. */
const isoDate = dateTimeParam();

export const AuditQuery = z.strictObject({
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
export type AuditQuery = z.input<typeof AuditQuery>;

export const AuditEntry = z
  .strictObject({
    id: z.number().int(),
    at: z.string().openapi({ format: 'date-time' }),
    keyId: z.string().nullable(),
    action: z.string().openapi({ example: 'keys.create' }),
    method: z.string(),
    path: z.string(),
    target: z.string().nullable(),
    ip: z.string().nullable(),
    status: z.number().int(),
    outcome: z.enum(['ok', 'denied', 'error']),
    requestId: z.string().nullable(),
    details: z.record(z.string(), z.unknown()).nullable(),
  })
  .openapi('AuditEntry');

export const AuditPage = z
  .strictObject({ entries: z.array(AuditEntry), nextCursor: z.string().nullable() })
  .openapi('AuditPage');
export type AuditPage = z.infer<typeof AuditPage>;

export const listAuditLog = createRoute({
  method: 'get',
  path: '/v1/admin/audit',
  operationId: 'listAuditLog',
  tags: ['admin'],
  summary: 'Read the audit log',
  description: 'Every admin and compliance call, refused ones included; newest first, keyset-paginated.',
  security: needs('admin'),
  request: { query: AuditQuery },
  responses: {
    200: { description: 'One page of entries', content: json(AuditPage) },
    ...errorResponses([400, ...V1_ERRORS], {
      400: '`invalid_query` with `details`; `invalid_cursor`',
      503: 'Also `database_unavailable`',
    }),
  },
});

/** `GET /v1/admin/audit`: the audit log, newest first, with keyset pagination. */
export function auditRoutes(deps: AuditRoutesDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();

  app.openapi({ ...listAuditLog, middleware: [requireScope(deps.keys, 'admin')] }, async (c) => {
    const { cursor, ...q } = c.req.valid('query');
    const beforeId = cursor === undefined ? undefined : decodeAuditCursor(cursor);
    if (cursor !== undefined && beforeId === undefined) throw errors.invalidCursor();
    const page = await withDb(() => listAudit(deps.db, beforeId === undefined ? q : { ...q, beforeId }));
    return c.json({ entries: page.entries, nextCursor: page.nextCursor ?? null }, 200);
  });

  return app;
}
