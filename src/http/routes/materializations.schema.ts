import { createRoute, z } from '@hono/zod-openapi';
import { MaterializationSpec } from '../../materialize/spec.ts';
import { errorResponses, handReadSchema, invalidInput, json, needs, V1_ERRORS } from '../openapi.ts';

// The materialisations admin API's declarations (ARCHITECTURE §17); handlers in materializations.ts.

const Column = z.strictObject({
  table: z.string(),
  column: z.string(),
  path: z
    .array(z.string())
    .openapi({ description: 'The JSON path it projects, inside properties or traits' }),
  type: z.enum(['boolean', 'bigint', 'double', 'text']).openapi({ description: 'Its type as created' }),
  wanted: z
    .enum(['boolean', 'bigint', 'double', 'text'])
    .openapi({ description: 'The widest type seen: a rebuild creates the column with it' }),
  conflicts: z
    .number()
    .int()
    .openapi({ description: 'Values that did not fit (kept in the jsonb beside it)' }),
  conflictSample: z
    .string()
    .nullable()
    .openapi({ description: 'The id of one event whose value did not fit' }),
});

export const Materialization = z
  .strictObject({
    name: z.string(),
    spec: z.record(z.string(), z.unknown()).openapi({ description: 'The configuration, defaults filled in' }),
    state: z.enum(['building', 'running', 'failed']),
    position: z.strictObject({ xid: z.string(), seq: z.number().int() }).nullable().openapi({
      description: 'The feed position: every feed row from it on is still to apply (null: never built)',
    }),
    lag: z.strictObject({
      pending: z
        .number()
        .int()
        .openapi({ description: 'Stored events not applied yet (counted up to 1,000,000)' }),
      seconds: z
        .number()
        .openapi({ description: 'How long ago the oldest of them was received (0: caught up)' }),
      staleDays: z.number().int().openapi({
        description:
          'Days of daily_counts touched by applied events and not recounted yet (every 2 s, and when caught up)',
      }),
      unsynced: z.number().int().openapi({
        description:
          'An outside destination: rows changed in the staging schema and not synced to the destination yet (0 for a schema of this database)',
      }),
    }),
    eventsApplied: z.number().int(),
    appliedUntil: z.string().nullable().openapi({ description: 'The newest event time applied' }),
    lastBatchAt: z.string().nullable(),
    lastRebuildAt: z.string().nullable(),
    lastRebuildArchivedFrom: z.string().nullable().openapi({
      description:
        'The first archived month (YYYY-MM) the last rebuild read back from the archive: the tables hold the archived months from it on (null: the stored events only)',
    }),
    rebuildRequestedAt: z
      .string()
      .nullable()
      .openapi({ description: 'A rebuild asked for and not done yet' }),
    rebuildArchivedFrom: z.string().nullable().openapi({
      description: 'The first archived month the rebuild asked for reads too (null: the stored events only)',
    }),
    lastError: z.string().nullable(),
    lastErrorAt: z.string().nullable(),
    failures: z.number().int(),
    runningOn: z.string().nullable().openapi({ description: 'The work process holding its lease' }),
    tables: z.record(z.string(), z.number().int()).openapi({
      description:
        "Rows per table, from PostgreSQL's statistics (approximate; never waits on a batch under way)",
    }),
    eventTables: z.record(z.string(), z.string()).openapi({ description: 'Event name → its table' }),
    columns: z.array(Column).openapi({ description: 'The catalog: every typed column' }),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('Materialization');
export type MaterializationView = z.infer<typeof Materialization>;

const Name = z.object({ name: z.string().openapi({ description: 'The materialisation name' }) });
const unavailable = { 503: 'Also `database_unavailable`' } as const;
const BODY_ERRORS = [400, 413, 415, ...V1_ERRORS] as const;

export const putMaterialization = createRoute({
  method: 'put',
  path: '/v1/admin/materializations/{name}',
  operationId: 'putMaterialization',
  tags: ['admin'],
  summary: 'Create or change a materialisation',
  description:
    'Typed, query-ready tables kept in step with the events (ARCHITECTURE §17): `tracks`, `pages`, `screens`, `identifies`, `groups`, `aliases`, a table per track event name, `users`, `accounts`, `identity_links`, `daily_counts`. A new one, or one whose configuration changed, is built from the stored events, then kept up to date by a `work` process.',
  security: needs('admin'),
  middleware: [invalidInput('invalid_request', 'invalid materialization')],
  request: {
    params: Name,
    body: {
      required: true,
      content: { 'application/json': { schema: handReadSchema(MaterializationSpec) } },
    },
  },
  responses: {
    200: { description: 'Changed (rebuilt when its tables change)', content: json(Materialization) },
    201: { description: 'Created (built by a work process)', content: json(Materialization) },
    ...errorResponses([...BODY_ERRORS, 409], {
      400: '`invalid_request` with `details` naming the field',
      409: '`destination_in_use`: another materialisation writes to this schema, file or prefix',
      ...unavailable,
    }),
  },
});

export const listMaterializationsRoute = createRoute({
  method: 'get',
  path: '/v1/admin/materializations',
  operationId: 'listMaterializations',
  tags: ['admin'],
  summary: 'List materialisations with their state',
  security: needs('admin'),
  responses: {
    200: {
      description: 'Every materialisation',
      content: json(z.strictObject({ materializations: z.array(Materialization) })),
    },
    ...errorResponses(V1_ERRORS, unavailable),
  },
});

export const getMaterializationRoute = createRoute({
  method: 'get',
  path: '/v1/admin/materializations/{name}',
  operationId: 'getMaterialization',
  tags: ['admin'],
  summary: 'A materialisation: position, lag, rows per table, the catalog and its type conflicts',
  security: needs('admin'),
  request: { params: Name },
  responses: {
    200: { description: 'The materialisation', content: json(Materialization) },
    ...errorResponses(V1_ERRORS, { 404: 'No materialisation with this name', ...unavailable }),
  },
});

/** `POST …/rebuild`'s optional body. */
export const RebuildRequest = z.strictObject({
  archivedFrom: z
    .string()
    .regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'a month, YYYY-MM')
    .optional()
    .openapi({
      description:
        'Also read back the archived events of this month and later (those retention removed from PostgreSQL), for the services the materialisation covers',
      example: '2026-01',
    }),
});
export type RebuildRequest = z.input<typeof RebuildRequest>;

export const rebuildMaterializationRoute = createRoute({
  method: 'post',
  path: '/v1/admin/materializations/{name}/rebuild',
  operationId: 'rebuildMaterialization',
  tags: ['admin'],
  summary: 'Rebuild a materialisation from the stored events (and archived months)',
  description:
    'Every table is built again into a shadow schema, with each column at the widest type seen, and swapped in with the feed position in one transaction: readers see the old tables until then, never a half-built one. Without a body (or `{}`) it reads the stored events; with `archivedFrom` it also reads, in the same transaction, every archived object of that month and later whose rows left PostgreSQL, each checked against its manifest. Rebuilds that follow by themselves (a new configuration, anonymisation) keep the archived months the tables hold.',
  security: needs('admin'),
  middleware: [invalidInput('invalid_request', 'invalid rebuild request')],
  request: {
    params: Name,
    body: { required: false, content: { 'application/json': { schema: handReadSchema(RebuildRequest) } } },
  },
  responses: {
    202: { description: 'Asked for', content: json(Materialization) },
    ...errorResponses(BODY_ERRORS, {
      400: '`invalid_request` with `details` naming the field (`archivedFrom` not a YYYY-MM month), `invalid_json`',
      404: 'No materialisation with this name',
      ...unavailable,
    }),
  },
});

export const deleteMaterializationRoute = createRoute({
  method: 'delete',
  path: '/v1/admin/materializations/{name}',
  operationId: 'deleteMaterialization',
  tags: ['admin'],
  summary: 'Delete a materialisation and drop its tables',
  security: needs('admin'),
  request: { params: Name },
  responses: {
    204: { description: 'Deleted, its schema dropped' },
    ...errorResponses(V1_ERRORS, { 404: 'No materialisation with this name', ...unavailable }),
  },
});
