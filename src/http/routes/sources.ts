import { randomUUID } from 'node:crypto';
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../../config.ts';
import { SourceError, type SourceProbe } from '../../sources/errors.ts';
import { mappingOf, mapRecord } from '../../sources/mapping.ts';
import { type ReaderSettings, readerFor } from '../../sources/readers.ts';
import {
  SecretsUnavailableError,
  SecretsUnreadableError,
  type SourceSecrets,
} from '../../sources/secrets.ts';
import {
  SECRET_FIELDS,
  SourceConfig,
  type SourceKind,
  scrub,
  secretStrings,
  splitSecrets,
} from '../../sources/settings.ts';
import {
  deleteSource,
  getSource,
  insertSource,
  listSources,
  SourceNameTakenError,
  type SourceRow,
  updateSource,
} from '../../store/sources.repo.ts';
import { bodyKind, parseJson, readBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, withDb } from '../errors.ts';
import type { IngestDeps, Rejection } from '../ingest.ts';
import { ingestPipeline } from '../ingest.ts';
import { mayUseService, type Principal } from '../key-resolver.ts';
import { requestLogger } from '../middleware/request-context.ts';
import { errorResponses, handReadSchema, invalidInput, json, needs, V1_ERRORS } from '../openapi.ts';

export interface SourceRoutesDeps extends IngestDeps {
  config: IngestDeps['config'] & ReaderSettings & Pick<Config, 'SOURCE_LEASE_TTL_S'>;
  logger: Logger;
  pool: pg.Pool;
  secrets: SourceSecrets;
}

// ---- Declarations -------------------------------------------------------------------------

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

// ---- Handlers -----------------------------------------------------------------------------

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BODY_LIMIT = 64 * 1024;
const PROBE_MS = 30_000;
const SAMPLE = 10;
/** The id a configuration under test maps its records with (a created source uses its own). */
const TEST_SOURCE_ID = '00000000-0000-0000-0000-000000000000';

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** The source as the API shows it: settings without secrets, the names of the secrets held, its state. */
export function sourceView(row: SourceRow): SourceView {
  const kind = row.kind as SourceKind;
  const settings = row.settings;
  const held = kind === 'http' ? (row.settings.auth ? ['auth'] : []) : [...SECRET_FIELDS[kind]];
  return {
    id: row.id,
    kind,
    name: row.name,
    service: row.service,
    paused: row.paused,
    settings,
    secrets: held,
    ...(kind === 'webhook' ? { webhookPath: `/v1/webhooks/${row.id}` } : {}),
    state: {
      position: row.position,
      rowsRead: row.rowsRead,
      eventsAccepted: row.eventsAccepted,
      eventsDuplicate: row.eventsDuplicate,
      eventsRejected: row.eventsRejected,
      eventsSkipped: row.eventsSkipped,
      lastRejection: row.lastRejection,
      lastRunAt: iso(row.lastRunAt),
      lastSuccessAt: iso(row.lastSuccessAt),
      lastError: row.lastError,
      lastErrorAt: iso(row.lastErrorAt),
      failures: row.failures,
      nextRunAt: kind === 'webhook' ? null : iso(row.nextRunAt),
      runningOn: row.runningOn,
    },
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

/** The principal a source's events are checked as: bound to the source's service (§11), recorded as `source:<id>`. */
export function sourcePrincipal(
  id: string,
  service: string,
  rateLimitPerMinute: number | null = null,
): Principal {
  return {
    keyId: `source:${id}`,
    name: `source ${id}`,
    scopes: ['ingest'],
    rateLimitPerMinute,
    services: [service],
  };
}

const refuseService = (principal: Principal, service: string) => {
  if (!mayUseService(principal, service)) {
    throw new ApiError('service_not_allowed', 403, `this key may not use service "${service}"`);
  }
};

/** A source that failed its check, as the 400 the admin API answers (secrets scrubbed). */
const checkFailed = (err: SourceError, secrets: string[]) =>
  new ApiError(err.code, 400, `the source cannot be read: ${scrub(err.message, secrets)}`, {
    details: [{ path: err.field, code: err.code, message: scrub(err.message, secrets) }],
  });

async function readJson(c: Context<AppEnv>): Promise<unknown> {
  bodyKind(c, ['json']);
  return parseJson(await readBody(c, BODY_LIMIT));
}

/** `/v1/admin/sources*`. The `admin` scope is checked by `adminRoutes`. */
export function registerSourceRoutes(app: OpenAPIHono<AppEnv>, deps: SourceRoutesDeps): void {
  const pipeline = ingestPipeline(deps);

  /** Tries a pull source: `SourceProbe`, or throws its SourceError. Webhooks are not tried. */
  const probe = async (config: SourceConfig, sample = 1): Promise<SourceProbe | undefined> => {
    const reader = readerFor(config, deps.config);
    if (!reader) return undefined;
    try {
      return await reader.probe(sample, AbortSignal.timeout(PROBE_MS));
    } finally {
      await reader.close().catch(() => {});
    }
  };
  const probeOrRefuse = async (config: SourceConfig, secrets: Record<string, unknown>) => {
    try {
      await probe(config);
    } catch (err) {
      if (err instanceof SourceError) throw checkFailed(err, secretStrings(secrets));
      throw err;
    }
  };
  const sealed = (id: string, secrets: Record<string, unknown>) => {
    try {
      return deps.secrets.seal(id, secrets);
    } catch (err) {
      if (err instanceof SecretsUnavailableError)
        throw new ApiError('encryption_not_configured', 409, err.message);
      throw err;
    }
  };
  const named = async <T>(write: () => Promise<T>): Promise<T> => {
    try {
      return await withDb(write);
    } catch (err) {
      if (err instanceof SourceNameTakenError) throw new ApiError('source_exists', 409, err.message);
      throw err;
    }
  };
  const found = async (c: Context<AppEnv>, id: string): Promise<SourceRow> => {
    const row = UUID.test(id) ? await withDb(() => getSource(deps.pool, id)) : undefined;
    if (!row || !mayUseService(c.get('principal'), row.service)) {
      throw new ApiError('not_found', 404, 'no source with this id');
    }
    return row;
  };

  app.openapi(createSource, async (c) => {
    const config = SourceConfig.parse(await readJson(c));
    refuseService(c.get('principal'), config.service);
    const { settings, secrets } = splitSecrets(config);
    const id = randomUUID();
    const secretText = sealed(id, secrets);
    await probeOrRefuse(config, secrets);
    const row = await named(() =>
      insertSource(deps.pool, {
        id,
        kind: config.kind,
        name: config.name,
        service: config.service,
        settings,
        secrets: secretText,
        paused: config.paused ?? false,
      }),
    );
    requestLogger(c, deps.logger).info(
      { sourceId: id, kind: config.kind, name: config.name },
      'source created',
    );
    return c.json(sourceView(row), 201);
  });

  app.openapi(testSource, async (c) => {
    const body = await readJson(c);
    const { sample, ...rest } =
      typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
    // A name is not needed to try a configuration.
    const config = SourceConfig.parse(
      typeof body === 'object' && body !== null ? { name: 'test', ...rest } : body,
    );
    const principal = c.get('principal');
    refuseService(principal, config.service);
    const { secrets } = splitSecrets(config);
    const result: SourceTestResult = { reachable: true, fields: [], estimatedRecords: null, results: [] };
    let records: { record: unknown; cursor?: string | undefined; recordId?: string | undefined }[] = [];
    if (config.kind === 'webhook') {
      records = sample === undefined ? [] : [{ record: sample }];
    } else {
      try {
        const probed = (await probe(config, SAMPLE)) as SourceProbe;
        result.fields = probed.fields;
        result.estimatedRecords = probed.estimatedRecords;
        records = probed.sample.records;
      } catch (err) {
        if (!(err instanceof SourceError)) throw err;
        const message = scrub(err.message, secretStrings(secrets));
        return c.json(
          { ...result, reachable: false, error: { code: err.code, field: err.field, message } },
          200,
        );
      }
    }
    const mapping = mappingOf(TEST_SOURCE_ID, config);
    const now = new Date().toISOString();
    const inputs: { index: number; value: unknown }[] = [];
    const rejected: Rejection[] = [];
    records.forEach((r, index) => {
      const mapped = mapRecord(r.record, mapping, { cursor: r.cursor, recordId: r.recordId }, now);
      if (mapped.ok) inputs.push({ index, value: mapped.input });
      else
        rejected.push({
          index,
          code: 'invalid_event',
          message: 'the record cannot become an event',
          details: [mapped.problem],
        });
    });
    const keyId = `source:${TEST_SOURCE_ID}`;
    const outcome = await pipeline.dryRun(
      sourcePrincipal(TEST_SOURCE_ID, config.service),
      inputs,
      rejected,
      pipeline.validation(keyId),
    );
    result.results = outcome.results as unknown as Record<string, unknown>[];
    return c.json(result, 200);
  });

  app.openapi(listSourcesRoute, async (c) => {
    const principal = c.get('principal');
    const rows = await withDb(() => listSources(deps.pool));
    return c.json({ sources: rows.filter((r) => mayUseService(principal, r.service)).map(sourceView) }, 200);
  });

  app.openapi(getSourceRoute, async (c) => c.json(sourceView(await found(c, c.req.valid('param').id)), 200));

  app.openapi(updateSourceRoute, async (c) => {
    const row = await found(c, c.req.valid('param').id);
    const body = await readJson(c);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ApiError('invalid_request', 400, 'body must be a JSON object');
    }
    const { resetPosition, ...change } = body as Record<string, unknown>;
    if (resetPosition !== undefined && typeof resetPosition !== 'boolean') {
      throw new ApiError('invalid_request', 400, 'invalid source change', {
        details: [{ path: 'resetPosition', code: 'invalid_type', message: 'must be a boolean' }],
      });
    }
    if (change.kind !== undefined && change.kind !== row.kind) {
      throw new ApiError('invalid_request', 400, 'invalid source change', {
        details: [{ path: 'kind', code: 'invalid_value', message: 'a source’s kind cannot change' }],
      });
    }
    const kind = row.kind as SourceKind;
    const secretNames: readonly string[] = SECRET_FIELDS[kind];
    const newSecrets = secretNames.filter((f) => change[f] !== undefined);
    let current: Record<string, unknown> = {};
    try {
      current = deps.secrets.open(row.id, row.secrets);
    } catch (err) {
      const given = secretNames.every(
        (f) => change[f] !== undefined || (kind === 'http' && !row.settings.auth),
      );
      if (!(err instanceof SecretsUnreadableError) || !given) {
        throw new ApiError('secrets_unreadable', 409, (err as Error).message);
      }
    }
    const before = SourceConfig.parse({
      ...row.settings,
      ...current,
      kind,
      name: row.name,
      service: row.service,
      paused: row.paused,
    });
    // `null` takes an optional field away (typeColumn for type, an API's auth).
    const merged: Record<string, unknown> = { ...before, ...change, kind };
    for (const [k, v] of Object.entries(change)) if (v === null) delete merged[k];
    const config = SourceConfig.parse(merged);
    const principal = c.get('principal');
    refuseService(principal, row.service);
    refuseService(principal, config.service);
    const { settings, secrets } = splitSecrets(config);
    const readsChanged = Object.keys(change).some(
      (k) => !['paused', 'name', 'intervalSeconds', 'service'].includes(k),
    );
    if (readsChanged && !config.paused) await probeOrRefuse(config, secrets);
    const updated = await named(() =>
      updateSource(deps.pool, row.id, {
        name: config.name,
        service: config.service,
        settings,
        secrets: newSecrets.length > 0 || readsChanged ? sealed(row.id, secrets) : row.secrets,
        paused: config.paused ?? false,
        resetPosition: resetPosition === true,
      }),
    );
    if (!updated) throw new ApiError('not_found', 404, 'no source with this id');
    requestLogger(c, deps.logger).info(
      {
        sourceId: row.id,
        changed: Object.keys(change),
        resetPosition: resetPosition === true,
        paused: updated.paused,
      },
      'source changed',
    );
    return c.json(sourceView(updated), 200);
  });

  app.openapi(deleteSourceRoute, async (c) => {
    const row = await found(c, c.req.valid('param').id);
    if (!(await withDb(() => deleteSource(deps.pool, row.id)))) {
      throw new ApiError('not_found', 404, 'no source with this id');
    }
    requestLogger(c, deps.logger).info({ sourceId: row.id, name: row.name }, 'source deleted');
    return c.body(null, 204);
  });
}
