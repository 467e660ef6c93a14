import { randomUUID } from 'node:crypto';
import pino from 'pino';
import type { BufferSnapshot } from '../../src/buffer/monitor.ts';
import { loadConfig } from '../../src/config.ts';
import { PlanBook } from '../../src/events/plans.ts';
import { type AppDeps, createApp } from '../../src/http/app.ts';
import { KeyResolver } from '../../src/http/key-resolver.ts';
import { openApiDocument } from '../../src/http/openapi.ts';
import { SourceSecrets } from '../../src/sources/secrets.ts';
import { hashKey, type Scope } from '../../src/store/api-keys.repo.ts';
import { createDb } from '../../src/store/db.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';

/** Where reads go without DATABASE_READ_URL. */
const PRIMARY_ONLY = {
  replicaConfigured: false,
  target: 'primary',
  lagS: null,
  reason: null,
  checkedAt: null,
};

/** The bootstrap key of {@link noopDeps}: every scope. */
export const NOOP_ADMIN_KEY = 'noop-admin-key';

/** Keys {@link noopDeps} knows besides the bootstrap one: `key-<scope>` carries only that scope. */
export const scopedKey = (scope: Scope | 'none') => `key-${scope}`;

const EMPTY_BUFFER: BufferSnapshot = {
  length: 0,
  pending: 0,
  lag: 0,
  maxEvents: 1_000_000,
  utilisation: 0,
  memoryRatio: null,
  deadLetters: 0,
  backpressure: false,
  partitions: [],
};

/** A pg pool stand-in: every query answers no rows; nothing is connected. */
function inertPool(): AppDeps['pool'] {
  const query = async () => ({ rows: [], rowCount: 0, fields: [], command: 'SELECT' });
  const pool = { query, connect: async () => ({ query, release: () => {} }), on: () => pool };
  return pool as unknown as AppDeps['pool'];
}

/** Resolves the bootstrap key and `key-<scope>` (one scope, or none); every other key is unknown. */
function scopedKeys(): KeyResolver {
  const known = new Map(
    (['ingest', 'read', 'dsar', 'admin', 'none'] as const).map((scope, i) => [
      hashKey(scopedKey(scope)),
      { scope, id: `00000000-0000-4000-8000-00000000000${i}` },
    ]),
  );
  return new KeyResolver({
    adminApiKey: NOOP_ADMIN_KEY,
    logger: pino({ level: 'silent' }),
    findByHash: async (hash) => {
      const key = known.get(hash);
      if (!key) return undefined;
      return {
        id: key.id,
        name: key.scope,
        scopes: key.scope === 'none' ? [] : [key.scope],
        services: [],
        rateLimitPerMinute: null,
        keyPrefix: 'key-',
        createdAt: new Date(0).toISOString(),
        revokedAt: null,
        expiresAt: null,
      };
    },
  });
}

/**
 * Inert stand-ins for everything `createApp` needs: no Redis, no PostgreSQL, no files.
 * Ingest accepts, reads find nothing, health is all well; `overrides` replace any part
 * (a fake that throws, a spy). For unit tests and for building the OpenAPI document.
 */
export function noopDeps(overrides: Partial<AppDeps> = {}): AppDeps {
  const pool = inertPool();
  const metrics = new Metrics();
  const store = { location: 'memory://noop' };
  const deps = {
    config: loadConfig({}),
    logger: pino({ level: 'silent' }),
    metrics,
    redis: { ping: async () => 'PONG', status: 'ready' },
    pool,
    db: createDb(pool),
    producer: { enqueue: async (items: unknown[]) => items.map(() => 'accepted') },
    monitor: { overloaded: false, snapshot: async () => EMPTY_BUFFER },
    deadLetters: { replay: async () => 0 },
    keys: scopedKeys(),
    workers: { live: async () => [] },
    retention: { start: async () => ({ runId: randomUUID(), done: Promise.resolve('completed') }), store },
    subjects: { isOptedOut: () => false, publish: async () => {} },
    plans: { book: new PlanBook(), changed: async () => {} },
    // No source exists: a webhook delivery is a 404.
    webhooks: { get: async () => null, record: () => {} },
    sourceSecrets: new SourceSecrets(undefined),
    erasure: { request: async () => randomUUID(), status: async () => undefined },
    exports: { pool, store, metrics, workDir: '/nonexistent' },
    ...overrides,
  };
  // Reads run on the primary, the overridden pool when there is one.
  const primary = { pool: deps.pool, db: deps.db };
  const reads = { read: <T>(fn: (t: typeof primary) => Promise<T>) => fn(primary), route: PRIMARY_ONLY };
  return { reads, ...deps } as unknown as AppDeps;
}

/** The OpenAPI document of the app, built in-process: what `/openapi.json` serves. */
export function buildOpenApiDocument(): ReturnType<typeof openApiDocument> {
  return openApiDocument(createApp(noopDeps()));
}
