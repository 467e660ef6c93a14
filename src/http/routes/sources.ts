import { randomUUID } from 'node:crypto';
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../../config.ts';
import { type ReadRecord, SourceError, type SourceProbe } from '../../sources/errors.ts';
import { mappingOf } from '../../sources/mapping.ts';
import { type ReaderSettings, readerFor } from '../../sources/readers.ts';
import { mapBatch } from '../../sources/runner.ts';
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
import type { IngestDeps } from '../ingest.ts';
import { ingestPipeline } from '../ingest.ts';
import { mayUseService, type Principal } from '../key-resolver.ts';
import { requestLogger } from '../middleware/request-context.ts';
import {
  createSource,
  deleteSourceRoute,
  getSourceRoute,
  listSourcesRoute,
  type SourceTestResult,
  type SourceView,
  testSource,
  updateSourceRoute,
} from './sources.schema.ts';

export interface SourceRoutesDeps extends IngestDeps {
  config: IngestDeps['config'] & ReaderSettings & Pick<Config, 'SOURCE_LEASE_TTL_S'>;
  logger: Logger;
  pool: pg.Pool;
  secrets: SourceSecrets;
}

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
    let records: ReadRecord[] = [];
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
    const { inputs, rejected } = mapBatch(
      records,
      mappingOf(TEST_SOURCE_ID, config),
      new Date().toISOString(),
    );
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
        // A run in progress goes on with a pause (it stops at its next batch) or a new name;
        // anything else is read by a new run.
        takeLease: resetPosition === true || Object.keys(change).some((k) => k !== 'paused' && k !== 'name'),
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
