#!/usr/bin/env -S node --max-semi-space-size=16
import cluster from 'node:cluster';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { createObjectStore } from './archive/object-store.ts';
import { StreamConsumer } from './buffer/consumer.ts';
import { DeadLetterStream } from './buffer/dead-letter.ts';
import { BufferMonitor } from './buffer/monitor.ts';
import { EventProducer } from './buffer/producer.ts';
import { WorkerStatusBoard } from './buffer/worker-status.ts';
import { ErasureService } from './compliance/erasure.ts';
import type { ExportOptions } from './compliance/export.ts';
import {
  MetadataCipher,
  type MetadataEncryption,
  parseMetadataEncryption,
} from './compliance/metadata-cipher.ts';
import { SubjectRegistry } from './compliance/subjects.ts';
import { type Config, ConfigError, loadConfig, maxRetentionDays } from './config.ts';
import { createDeps, type Deps } from './deps.ts';
import { runApiPrimary } from './http/api-cluster.ts';
import { createApp } from './http/app.ts';
import { KeyInvalidations, KeyResolver } from './http/key-resolver.ts';
import { RedisRateLimiter } from './http/middleware/rate-limit.ts';
import { startHttpServers } from './http/server.ts';
import { parseMonth } from './retention/policy.ts';
import { RetentionService } from './retention/service.ts';
import {
  createApiKey,
  findActiveKeyByHash,
  listApiKeys,
  revokeApiKey,
  SCOPES,
  type Scope,
} from './store/api-keys.repo.ts';
import { migrateDatabase } from './store/migrate.ts';
import { getRun } from './store/retention-runs.repo.ts';
import { RetentionBusyError } from './store/run-leases.repo.ts';
import { registerAutoscaleMetrics, WorkerDemand } from './telemetry/autoscale-metrics.ts';
import { registerBufferMetrics } from './telemetry/buffer-metrics.ts';
import { createLogger } from './telemetry/logger.ts';
import { startMetricsServer } from './telemetry/metrics-server.ts';
import { registerStoreMetrics } from './telemetry/store-metrics.ts';
import { startTracing } from './telemetry/tracing.ts';
import { DatabaseBreaker } from './worker/breaker.ts';
import { openOwnCheckpoint, replayOrphanedCheckpoints } from './worker/checkpoint/slots.ts';
import { Maintenance } from './worker/maintenance.ts';
import { Worker } from './worker/worker.ts';

const USAGE = `usage: tributary <role>

roles:
  all                     migrate, then serve and work in one process (the quick start)
  serve                   the HTTP API
  work                    a stream consumer writing to PostgreSQL
  migrate                 create the database if absent, apply migrations, create partitions
  retention               run one retention pass now (archive, verify, delete, anonymise)
  restore --from YYYY-MM [--to YYYY-MM] [--service NAME]
                          load archived rows back into PostgreSQL (idempotent)
  keys create --name NAME --scopes ingest,read[,dsar,admin] [--rate-limit N]
  keys list
  keys revoke ID

Configuration comes from environment variables (see README).`;

type Stop = () => Promise<void>;

/**
 * Migrations hold a session advisory lock across statements, which PgBouncer in transaction
 * mode cannot keep: they take the direct connection when one is given. Everything else uses
 * DATABASE_URL.
 */
function migrationUrl(config: Config): string {
  return config.DATABASE_MIGRATION_URL ?? config.DATABASE_URL;
}

/** Resolves when the connection is ready, or after `ms` (the API then starts anyway and answers 503). */
async function redisReady(deps: Deps, ms: number): Promise<void> {
  if (deps.redis.status === 'ready') return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      deps.logger.warn('Redis not reachable yet; serving, ingest answers 503 until it is');
      resolve();
    }, ms);
    deps.redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** One retention service per process, shared by the API (admin routes) and the worker (schedule). */
const retentionServices = new WeakMap<Deps, RetentionService>();
function retentionOf(deps: Deps): RetentionService {
  let service = retentionServices.get(deps);
  if (!service) {
    service = new RetentionService({
      pool: deps.pool,
      store: createObjectStore(deps.config),
      logger: deps.logger,
      metrics: deps.metrics,
      config: deps.config,
    });
    retentionServices.set(deps, service);
  }
  return service;
}

interface Compliance {
  subjects: SubjectRegistry;
  erasure: ErasureService;
  exports: ExportOptions;
}

/** Opt-outs, erasures and exports: one set per process, shared by the API and the worker. */
const complianceOfDeps = new WeakMap<Deps, Promise<Compliance>>();
function complianceOf(deps: Deps): Promise<Compliance> {
  let found = complianceOfDeps.get(deps);
  if (!found) {
    found = (async () => {
      const { config, pool, redis, keys, logger, metrics } = deps;
      const subjects = new SubjectRegistry({
        pool,
        redis,
        subscriber: deps.blockingRedis(60_000),
        keys,
        logger,
      });
      await subjects.start();
      const store = retentionOf(deps).store;
      const erasure = new ErasureService({
        pool,
        redis,
        keys,
        store,
        subjects,
        workers: new WorkerStatusBoard({ redis, keys }),
        logger,
        metrics,
        workDir: config.ARCHIVE_WORK_DIR,
        batchRows: config.RETENTION_BATCH_ROWS,
        anonymizeSecret: config.ANONYMIZE_SECRET,
        staleMs: config.DSAR_LOCK_TTL_MS,
      });
      const exports: ExportOptions = {
        pool,
        store,
        metrics,
        workDir: config.ARCHIVE_WORK_DIR,
        anonymizeSecret: config.ANONYMIZE_SECRET,
      };
      return { subjects, erasure, exports };
    })();
    complianceOfDeps.set(deps, found);
  }
  return found;
}

async function startServe(deps: Deps, encryption: MetadataEncryption | undefined): Promise<Stop> {
  const { config, logger, metrics, redis, keys, pool, db } = deps;
  await redisReady(deps, 5_000);
  const cipher = encryption && new MetadataCipher({ ...encryption, metrics });
  const compliance = await complianceOf(deps);
  const monitor = new BufferMonitor({
    redis,
    keys,
    maxEvents: config.BUFFER_MAX_EVENTS,
    maxMemoryRatio: config.BUFFER_MAX_MEMORY_RATIO,
    logger,
  });
  monitor.start();
  registerBufferMetrics(metrics.registry, monitor);
  const workers = new WorkerStatusBoard({ redis, keys });
  // In the API rather than the workers: it sees the whole buffer and every worker, and
  // reports even when no worker runs (KEDA scales the workers on it: ops/k8s).
  const demand = new WorkerDemand({ redis, keys, workers, logger });
  demand.start();
  registerAutoscaleMetrics(metrics.registry, demand);
  const producer = new EventProducer({
    redis,
    keys,
    dedupeWindowS: config.DEDUPE_WINDOW_S,
    waitReplicas: config.REDIS_WAIT_REPLICAS,
    waitTimeoutMs: config.REDIS_WAIT_TIMEOUT_MS,
  });
  const app = createApp({
    config,
    logger,
    metrics,
    redis,
    pool,
    db,
    producer,
    monitor,
    deadLetters: new DeadLetterStream({ redis, keys }),
    workers,
    retention: retentionOf(deps),
    ...compliance,
    exports: { ...compliance.exports, cipher },
    cipher,
    keys: new KeyResolver({
      findByHash: (hash) => findActiveKeyByHash(db, hash),
      adminApiKey: config.ADMIN_API_KEY,
      logger,
      invalidations: new KeyInvalidations({
        redis,
        subscriber: deps.blockingRedis(1_000),
        channel: keys.keyInvalidations,
        logger,
      }),
    }),
    rateLimiter: new RedisRateLimiter({ redis, keys, logger }),
  });
  const server = await startHttpServers(app, config);
  logger.info({ port: server.port, adminPort: server.adminPort, tls: server.tls }, 'listening');
  return async () => {
    monitor.stop();
    demand.stop();
    await server.close();
  };
}

async function startWork(deps: Deps): Promise<Stop> {
  const { config, logger, metrics, keys, pool, redis } = deps;
  const consumer = new StreamConsumer({
    redis: deps.blockingRedis(config.READ_BLOCK_MS),
    keys,
    consumerName: `${hostname()}-${process.pid}`,
    logger,
  });
  const maintenance = new Maintenance({ pool, consumer, maxRetentionDays: maxRetentionDays(config), logger });
  await maintenance.ensurePartitions().catch((err: unknown) => {
    logger.warn({ err: String(err) }, 'partition maintenance failed at start; retrying hourly');
  });
  maintenance.start();
  registerStoreMetrics(metrics.registry, pool);
  const slotOptions = {
    root: config.CHECKPOINT_DIR,
    segmentBytes: config.CHECKPOINT_SEGMENT_BYTES,
    logger,
    metrics,
  };
  const checkpoint = await openOwnCheckpoint(slotOptions);
  const compliance = await complianceOf(deps);
  let worker: Worker | undefined;
  const breaker = new DatabaseBreaker({
    config,
    logger,
    metrics,
    onChange: () => void worker?.publishStatus(),
  });
  worker = new Worker({
    consumer,
    deadLetters: new DeadLetterStream({ redis, keys }),
    pool,
    breaker,
    checkpoint,
    replayOrphans: (persist, stop) =>
      replayOrphanedCheckpoints({ ...slotOptions, own: checkpoint.dir }, persist, stop),
    statusBoard: new WorkerStatusBoard({ redis, keys }),
    subjects: compliance.subjects,
    logger,
    metrics,
    config,
  });
  await worker.start();
  compliance.erasure.startPolling();
  const retention = retentionOf(deps);
  retention.startSchedule();
  const metricsServer =
    config.METRICS_PORT === undefined
      ? undefined
      : await startMetricsServer(metrics.registry, config.HOST, config.METRICS_PORT);
  logger.info(
    {
      consumer: consumer.name,
      ...(metricsServer ? { metricsPort: metricsServer.port } : {}),
      partitions: keys.partitions,
      checkpointDir: checkpoint.dir,
      checkpoint: checkpoint.stats(),
    },
    'worker started',
  );
  return async () => {
    maintenance.stop();
    compliance.erasure.stop();
    compliance.subjects.stop();
    await retention.close();
    await worker.stop();
    await checkpoint.close();
    await metricsServer?.close();
  };
}

async function runKeys(config: Config, args: string[]): Promise<void> {
  const deps = createDeps({ ...config, LOG_LEVEL: 'warn' }, 'keys');
  try {
    const [sub, ...rest] = args;
    if (sub === 'create') {
      const { values } = parseArgs({
        args: rest,
        options: { name: { type: 'string' }, scopes: { type: 'string' }, 'rate-limit': { type: 'string' } },
      });
      const scopes = (values.scopes ?? '').split(',').filter(Boolean);
      const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
      if (!values.name || scopes.length === 0 || bad.length > 0) {
        throw new UsageError(`keys create needs --name and --scopes from ${SCOPES.join(',')}`);
      }
      const rate = values['rate-limit'] === undefined ? null : Number(values['rate-limit']);
      if (rate !== null && (!Number.isInteger(rate) || rate < 1))
        throw new UsageError('--rate-limit must be a positive integer');
      const { key, info } = await createApiKey(deps.db, {
        name: values.name,
        scopes: scopes as Scope[],
        rateLimitPerMinute: rate,
      });
      process.stdout.write(`${JSON.stringify({ id: info.id, key, scopes: info.scopes })}\n`);
    } else if (sub === 'list') {
      for (const k of await listApiKeys(deps.db)) process.stdout.write(`${JSON.stringify(k)}\n`);
    } else if (sub === 'revoke' && rest[0]) {
      if (!(await revokeApiKey(deps.db, rest[0]))) throw new UsageError(`no active key ${rest[0]}`);
      // Every API process drops the key from its cache now rather than within 5 s.
      await redisReady(deps, 2_000);
      await deps.redis.publish(deps.keys.keyInvalidations, rest[0]).catch(() => {});
      process.stdout.write(`revoked ${rest[0]}\n`);
    } else {
      throw new UsageError(USAGE);
    }
  } finally {
    await deps.close();
  }
}

class UsageError extends Error {}

/** A command's result as the last line of stdout, after every log line written before it. */
async function printResult(deps: Deps, result: object): Promise<void> {
  await new Promise<void>((resolve) => deps.logger.flush(() => resolve()));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** `tributary retention`: one pass in the foreground; prints the run; exit 1 when it failed. */
async function runRetention(config: Config): Promise<void> {
  const deps = createDeps(config, 'retention');
  try {
    const service = retentionOf(deps);
    let started: Awaited<ReturnType<RetentionService['start']>>;
    try {
      started = await service.start('cli');
    } catch (err) {
      if (err instanceof RetentionBusyError) {
        process.stderr.write(`tributary: ${err.message}; try again when it has finished\n`);
        process.exitCode = 3;
        return;
      }
      throw err;
    }
    const outcome = await started.done;
    const run = await getRun(deps.pool, started.runId);
    const { steps: _steps, ...summary } = run ?? { steps: [] };
    await printResult(deps, summary);
    if (outcome !== 'completed') process.exitCode = 1;
  } finally {
    await retentionOf(deps).close();
    await deps.close();
  }
}

/** `tributary restore --from YYYY-MM [--to YYYY-MM] [--service NAME]`. */
async function runRestore(config: Config, args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { from: { type: 'string' }, to: { type: 'string' }, service: { type: 'string' } },
  });
  if (!values.from) throw new UsageError('restore needs --from YYYY-MM');
  let from: ReturnType<typeof parseMonth>;
  let to: ReturnType<typeof parseMonth>;
  try {
    from = parseMonth(values.from);
    to = parseMonth(values.to ?? values.from);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (to.from < from.from) throw new UsageError('--to is before --from');
  if (values.service !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(values.service)) {
    throw new UsageError('--service must be 1–64 of [A-Za-z0-9._-]');
  }
  const deps = createDeps(config, 'restore');
  try {
    const result = await retentionOf(deps).restore(from, to, values.service);
    await printResult(deps, { status: 'ok', ...result });
  } finally {
    await retentionOf(deps).close();
    await deps.close();
  }
}

async function runRoles(
  config: Config,
  role: 'serve' | 'work' | 'all',
  encryption: MetadataEncryption | undefined,
): Promise<void> {
  if (role === 'serve' && config.API_PROCESSES > 1 && cluster.isPrimary) {
    runApiPrimary(config.API_PROCESSES, createLogger(config.LOG_LEVEL, { role: 'serve-primary' }));
    return;
  }
  const stopTracing = await startTracing(role);
  const deps = createDeps(config, role);
  const { logger } = deps;
  if (role === 'all') {
    const result = await migrateDatabase(migrationUrl(config), maxRetentionDays(config));
    logger.info(result, 'database ready');
  }
  const stops: Stop[] = [];
  if (role === 'serve' || role === 'all') stops.push(await startServe(deps, encryption));
  if (role === 'work' || role === 'all') stops.push(await startWork(deps));

  let shuttingDown = false;
  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, config.SHUTDOWN_TIMEOUT_MS);
    force.unref();
    // Stop accepting first (HTTP), then drain the worker, then close clients.
    for (const stop of stops)
      await stop().catch((err: unknown) => logger.error({ err: String(err) }, 'stop failed'));
    await deps.close();
    await stopTracing().catch((err: unknown) =>
      logger.warn({ err: String(err) }, 'trace export at shutdown failed'),
    );
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

async function main(argv: string[]): Promise<void> {
  const [role, ...args] = argv;
  if (!role || role === '--help' || role === '-h' || role === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const config = loadConfig();
  // Checked for every role, so a bad key stops `migrate` in a deploy before `serve` starts.
  const encryption = parseMetadataEncryption(config);
  switch (role) {
    case 'serve':
    case 'work':
    case 'all':
      return runRoles(config, role, encryption);
    case 'migrate': {
      const result = await migrateDatabase(migrationUrl(config), maxRetentionDays(config));
      process.stdout.write(`${JSON.stringify({ status: 'ok', ...result })}\n`);
      return;
    }
    case 'keys':
      return runKeys(config, args);
    case 'retention':
      return runRetention(config);
    case 'restore':
      return runRestore(config, args);
    default:
      throw new UsageError(`unknown role "${role}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof UsageError) {
    process.stderr.write(`tributary: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`tributary: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
