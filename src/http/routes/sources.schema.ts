import { createRoute, z } from '@hono/zod-openapi';
import { errorResponses, handReadSchema, invalidInput, json, needs, V1_ERRORS } from '../openapi.ts';

// The sources admin API's declarations (ARCHITECTURE §15): schemas and routes; the handlers
// are in sources.ts.

const SourceState = z
  .strictObject({
    position: z
      .record(z.string(), z.unknown())
      .nullable()
      .openapi({ description: 'The committed cursor: the next run reads after it (null: from the start)' }),
    rowsRead: z.number().int(),
    eventsAccepted: z.number().int(),
    eventsDuplicate: z.number().int(),
    eventsRejected: z.number().int(),
    eventsSkipped: z.number().int().openapi({ description: 'Events of opted-out subjects' }),
    lastRejection: z.record(z.string(), z.unknown()).nullable().openapi({
      description: 'The last record refused: when, code, message and details (never its values)',
    }),
    lastRunAt: z.string().nullable().openapi({ format: 'date-time' }),
    lastSuccessAt: z.string().nullable().openapi({ format: 'date-time' }),
    lastError: z.string().nullable().openapi({ description: 'The last failed run’s code and message' }),
    lastErrorAt: z.string().nullable().openapi({ format: 'date-time' }),
    failures: z.number().int().openapi({ description: 'Runs failed in a row' }),
    nextRunAt: z.string().nullable().openapi({ format: 'date-time' }),
    runningOn: z.string().nullable().openapi({ description: 'The work process running it now' }),
  })
  .openapi('SourceState');

export const Source = z
  .strictObject({
    id: z.guid(),
    kind: z.enum(['postgres', 'http', 'webhook']),
    name: z.string(),
    service: z.string(),
    paused: z.boolean(),
    settings: z
      .record(z.string(), z.unknown())
      .openapi({ description: 'The configuration without its secrets (an API’s auth shows only its type)' }),
    secrets: z
      .array(z.string())
      .openapi({ description: 'The secret fields stored (encrypted); their values are never returned' }),
    webhookPath: z.string().optional().openapi({ description: 'Webhooks: where the third party POSTs' }),
    state: SourceState,
    createdAt: z.string().openapi({ format: 'date-time' }),
    updatedAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('Source');
export type SourceView = z.infer<typeof Source>;

const SourceTestResult = z
  .strictObject({
    reachable: z.boolean(),
    error: z
      .strictObject({ code: z.string(), field: z.string(), message: z.string() })
      .optional()
      .openapi({ description: 'Why it cannot be read (when `reachable` is false)' }),
    fields: z.array(z.strictObject({ name: z.string(), type: z.string() })),
    estimatedRecords: z.number().int().nullable(),
    results: z.array(z.record(z.string(), z.unknown())).openapi({
      description:
        'The first records as events, each with what ingest would answer (as `POST /v1/events/validate`); the ids here are not the ones a created source gives',
    }),
  })
  .openapi('SourceTestResult');
export type SourceTestResult = z.infer<typeof SourceTestResult>;

const SOURCE_BODY = handReadSchema(
  z.looseObject({
    kind: z.enum(['postgres', 'http', 'webhook']),
    name: z.string(),
    service: z.string(),
  }),
);
const SourceId = z.object({ id: z.string().openapi({ description: 'The source id (a UUID)' }) });
const BODY_ERRORS = [400, 413, 415, ...V1_ERRORS] as const;
const unavailable = { 503: 'Also `database_unavailable`' } as const;
const CHECK_FAILED =
  '`invalid_request` with `details` naming the field; `source_unreachable`, `source_unauthorized` or `source_unreadable` when the source was tried and failed (`details[0].path` names the field)';

export const createSource = createRoute({
  method: 'post',
  path: '/v1/admin/sources',
  operationId: 'createSource',
  tags: ['admin'],
  summary: 'Create a source',
  description:
    'A PostgreSQL table or HTTP API to pull events from, or a webhook to receive them (ARCHITECTURE §15). A pull source is tried first: it must be reachable, accept the credentials and be readable. Secrets are stored encrypted (METADATA_ENCRYPTION_KEYS) and never returned.',
  security: needs('admin'),
  middleware: [invalidInput('invalid_request', 'invalid source')],
  request: { body: { required: true, content: { 'application/json': { schema: SOURCE_BODY } } } },
  responses: {
    201: { description: 'The source', content: json(Source) },
    ...errorResponses([...BODY_ERRORS, 409], {
      400: CHECK_FAILED,
      403: 'Also `service_not_allowed`: the key may not use this service',
      409: '`source_exists` (the name is taken); `encryption_not_configured` (METADATA_ENCRYPTION_KEYS is unset)',
      ...unavailable,
    }),
  },
});

export const testSource = createRoute({
  method: 'post',
  path: '/v1/admin/sources/test',
  operationId: 'testSource',
  tags: ['admin'],
  summary: 'Try a source configuration without creating it',
  description:
    'Reachable or not, the columns or fields found, an estimate of the records, and the first records mapped to events with what ingest would answer; nothing is stored or buffered. A webhook’s configuration is tried on `sample`, a payload as the third party would send it.',
  security: needs('admin'),
  middleware: [invalidInput('invalid_request', 'invalid source')],
  request: { body: { required: true, content: { 'application/json': { schema: SOURCE_BODY } } } },
  responses: {
    200: { description: 'What the source gives', content: json(SourceTestResult) },
    ...errorResponses(BODY_ERRORS, { 400: '`invalid_request` with `details` naming the field' }),
  },
});

export const listSourcesRoute = createRoute({
  method: 'get',
  path: '/v1/admin/sources',
  operationId: 'listSources',
  tags: ['admin'],
  summary: 'List sources with their state',
  security: needs('admin'),
  responses: {
    200: {
      description: 'Every source the key may see',
      content: json(z.strictObject({ sources: z.array(Source) })),
    },
    ...errorResponses(V1_ERRORS, unavailable),
  },
});

export const getSourceRoute = createRoute({
  method: 'get',
  path: '/v1/admin/sources/{id}',
  operationId: 'getSource',
  tags: ['admin'],
  summary: 'A source and its state (cursor, rows read, last run, last error)',
  security: needs('admin'),
  request: { params: SourceId },
  responses: {
    200: { description: 'The source', content: json(Source) },
    ...errorResponses(V1_ERRORS, { 404: 'No source with this id', ...unavailable }),
  },
});

export const updateSourceRoute = createRoute({
  method: 'patch',
  path: '/v1/admin/sources/{id}',
  operationId: 'updateSource',
  tags: ['admin'],
  summary: 'Pause, resume or change a source',
  description:
    '`{"paused": true}` pauses, `{"paused": false}` resumes; any other field of its kind changes it (a pull source is tried again when what it reads changes). `{"resetPosition": true}` reads it again from the start (records already stored stay single: their ids do not change). The kind cannot change.',
  security: needs('admin'),
  middleware: [invalidInput('invalid_request', 'invalid source change')],
  request: {
    params: SourceId,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: handReadSchema(
            z.looseObject({ paused: z.boolean().optional(), resetPosition: z.boolean().optional() }),
          ),
        },
      },
    },
  },
  responses: {
    200: { description: 'The source as it now is', content: json(Source) },
    ...errorResponses([...BODY_ERRORS, 409], {
      400: CHECK_FAILED,
      404: 'No source with this id',
      409: '`source_exists`; `secrets_unreadable` (give its secret fields again)',
      ...unavailable,
    }),
  },
});

export const deleteSourceRoute = createRoute({
  method: 'delete',
  path: '/v1/admin/sources/{id}',
  operationId: 'deleteSource',
  tags: ['admin'],
  summary: 'Delete a source (its events stay)',
  security: needs('admin'),
  request: { params: SourceId },
  responses: {
    204: { description: 'Deleted' },
    ...errorResponses(V1_ERRORS, { 404: 'No source with this id', ...unavailable }),
  },
});
