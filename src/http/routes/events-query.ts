import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { MetadataCipher } from '../../compliance/metadata-cipher.ts';
import { decodeCursor, queryEvents } from '../../store/events.repo.ts';
import type { ReadRouter } from '../../store/read-replica.ts';
import type { AppEnv } from '../env.ts';
import { errors, withDb } from '../errors.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requireScope } from '../middleware/auth.ts';
import { errorResponses, json, needs, V1_ERRORS } from '../openapi.ts';
import { dateTimeParam } from '../query-params.ts';

export interface EventQueryDeps {
  /** Where the query runs: the read replica while it keeps up, else the primary. */
  reads: Pick<ReadRouter, 'read'>;
  keys: KeyResolver;
  /** Opens the configured metadata keys for `read`. */
  cipher?: MetadataCipher | undefined;
}

const isoDate = dateTimeParam();

export const EventQuery = z.strictObject({
  service: z.string().min(1).max(64).optional(),
  type: z.string().min(1).max(128).optional(),
  userId: z.string().min(1).max(256).optional(),
  anonymousId: z.string().min(1).max(256).optional(),
  violations: z
    .enum(['true', 'false'])
    .transform((v) => v === 'true')
    .optional()
    .openapi({
      description:
        '`true`: only events stored with tracking-plan violations (mode `warn`); `false`: only those without',
    }),
  from: isoDate.optional().openapi({ description: 'Oldest `timestamp`, inclusive' }),
  to: isoDate.optional().openapi({ description: 'Newest `timestamp`, inclusive' }),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(200).optional().openapi({ description: 'The `nextCursor` of the previous page' }),
});
export type EventQuery = z.input<typeof EventQuery>;

export const StoredEvent = z
  .strictObject({
    id: z.guid(),
    service: z.string(),
    type: z.string(),
    timestamp: z.string().openapi({ format: 'date-time' }),
    receivedAt: z.string().openapi({ format: 'date-time' }),
    userId: z.string().nullable(),
    anonymousId: z
      .string()
      .nullable()
      .openapi({ description: "Segment's anonymousId: the subject before it was known" }),
    message: z.string().nullable(),
    metadata: z.record(z.string(), z.unknown()).nullable(),
    keyId: z.string().nullable().openapi({
      description:
        'The id of the API key that sent the event; null for events stored before keys were recorded',
    }),
    violations: z
      .array(z.strictObject({ path: z.string(), code: z.string(), message: z.string() }))
      .nullable()
      .openapi({
        description:
          'Its tracking-plan violations, when it was stored although it failed its schema (mode `warn`, ARCHITECTURE §14); null: none',
      }),
  })
  .openapi('StoredEvent');

export const EventPage = z
  .strictObject({
    events: z.array(StoredEvent),
    nextCursor: z.string().nullable().openapi({ description: 'null on the last page' }),
  })
  .openapi('EventPage');
export type EventPage = z.infer<typeof EventPage>;

export const listEvents = createRoute({
  method: 'get',
  path: '/v1/events',
  operationId: 'listEvents',
  tags: ['events'],
  summary: 'Read stored events',
  description:
    'Newest first, with keyset pagination. A key bound to services sees only their events, whatever the filters say (a `service` outside them gives an empty page).',
  security: needs('read'),
  request: { query: EventQuery },
  responses: {
    200: { description: 'One page of events', content: json(EventPage) },
    ...errorResponses([400, ...V1_ERRORS], {
      400: '`invalid_query` with `details`; `invalid_cursor`',
      503: 'Also `database_unavailable`',
    }),
  },
});

/** `GET /v1/events`. */
export function registerEventQuery(app: OpenAPIHono<AppEnv>, deps: EventQueryDeps): void {
  app.openapi({ ...listEvents, middleware: [requireScope(deps.keys, 'read')] }, async (c) => {
    const { cursor, ...q } = c.req.valid('query');
    const after = cursor !== undefined ? decodeCursor(cursor) : undefined;
    if (cursor !== undefined && !after) throw errors.invalidCursor();
    const services = c.get('principal')?.services ?? null;
    if (services !== null && q.service !== undefined && !services.includes(q.service)) {
      return c.json({ events: [], nextCursor: null }, 200);
    }
    const scoped = services === null ? q : { ...q, services };
    const page = await withDb(() =>
      deps.reads.read(({ db }) => queryEvents(db, after ? { ...scoped, after } : scoped)),
    );
    const cipher = deps.cipher;
    const rows = cipher ? page.rows.map((r) => ({ ...r, metadata: cipher.open(r.metadata) })) : page.rows;
    return c.json({ events: rows, nextCursor: page.cursor ?? null }, 200);
  });
}
