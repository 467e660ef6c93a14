import { hostname } from 'node:os';
import { createObjectStore } from '../archive/object-store.ts';
import { StreamConsumer } from '../buffer/consumer.ts';
import { DeadLetterStream } from '../buffer/dead-letter.ts';
import { BufferMonitor } from '../buffer/monitor.ts';
import { EventProducer } from '../buffer/producer.ts';
import { WorkerStatusBoard } from '../buffer/worker-status.ts';
import { ErasureService } from '../compliance/erasure.ts';
import type { ExportOptions } from '../compliance/export.ts';
import { MetadataCipher, type MetadataEncryption } from '../compliance/metadata-cipher.ts';
import { SubjectRegistry } from '../compliance/subjects.ts';
import { type Config, maxRetentionDays } from '../config.ts';
import { createDeps, type Deps } from '../deps.ts';
import { KeyInvalidations, KeyResolver } from '../http/key-resolver.ts';
import { RedisRateLimiter } from '../http/middleware/rate-limit.ts';
import { RetentionService } from '../retention/service.ts';
import { findActiveKeyByHash } from '../store/api-keys.repo.ts';
import { registerAutoscaleMetrics, WorkerDemand } from '../telemetry/autoscale-metrics.ts';
import { registerBufferMetrics } from '../telemetry/buffer-metrics.ts';
import { DatabaseBreaker } from '../worker/breaker.ts';
import type { Checkpoint } from '../worker/checkpoint/checkpoint.ts';
import {
  openOwnCheckpoint,
  replayOrphanedCheckpoints,
  type SlotOptions,
} from '../worker/checkpoint/slots.ts';
import { Maintenance } from '../worker/maintenance.ts';
import { Worker } from '../worker/worker.ts';
import { Lifetimes } from './lifetimes.ts';

export interface ServicesOptions {
  /** The process's role: its logger's `role` and its PostgreSQL application name. */
  role: string;
  /** Parsed METADATA_ENCRYPTION_KEYS; absent, metadata is stored as sent. */
  encryption?: MetadataEncryption | undefined;
  /** Flushes and stops tracing: the last step of {@link Services.close}. */
  stopTracing?: () => Promise<void>;
}

/** Builds the clients of a process and the composition root over them. */
export function createServices(config: Config, opts: ServicesOptions): Services {
  return new Services(createDeps(config, opts.role), opts);
}

/**
 * The composition root of one process: builds each service a role asks for on first use,
 * once, shared by every role of the process (`all` runs the API and a worker side by
 * side), and records how to close it. `close()` closes them newest first, then the
 * clients (Redis, then PostgreSQL), then telemetry.
 */
export class Services {
  readonly deps: Deps;
  readonly #lifetimes: Lifetimes;
  readonly #opts: ServicesOptions;
  #closing: Promise<void> | undefined;

  constructor(deps: Deps, opts: ServicesOptions) {
    this.deps = deps;
    this.#opts = opts;
    this.#lifetimes = new Lifetimes(deps.logger);
  }

  /** Records a closer for something a role started (a listener, a schedule): closed before what was built earlier. */
  defer(name: string, close: () => void | Promise<void>): void {
    this.#lifetimes.defer(name, close);
  }

  /** Resolves when Redis is ready, or after `ms` (the API then starts anyway and answers 503). */
  async redisReady(ms: number): Promise<void> {
    const { redis, logger } = this.deps;
    if (redis.status === 'ready') return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        logger.warn('Redis not reachable yet; serving, ingest answers 503 until it is');
        resolve();
      }, ms);
      redis.once('ready', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Retention passes and the archive's object store: the admin routes, the schedule and the CLI use it. */
  retention(): Promise<RetentionService> {
    const { pool, logger, metrics, config } = this.deps;
    return this.#lifetimes.once(
      'retention',
      () => new RetentionService({ pool, store: createObjectStore(config), logger, metrics, config }),
      (service) => service.close(),
    );
  }

  /** Opted-out subjects and erasures in progress, kept current over Redis pub/sub. */
  subjects(): Promise<SubjectRegistry> {
    const { config, pool, redis, logger } = this.deps;
    return this.#lifetimes.once(
      'subjects',
      async () => {
        const subjects = new SubjectRegistry({
          pool,
          redis,
          subscriber: this.deps.blockingRedis(60_000),
          prefix: config.REDIS_PREFIX,
          logger,
        });
        await subjects.start();
        return subjects;
      },
      (subjects) => subjects.stop(),
    );
  }

  /** Erasure requests; polling for them is started (and recorded) by the worker role. */
  erasure(): Promise<ErasureService> {
    return this.#lifetimes.once('erasure', async () => {
      const subjects = await this.subjects();
      const { store } = await this.retention();
      const { config, pool, redis, redisKeys, logger, metrics } = this.deps;
      return new ErasureService({
        pool,
        redis,
        keys: redisKeys,
        store,
        subjects,
        workers: await this.workerStatus(),
        logger,
        metrics,
        workDir: config.ARCHIVE_WORK_DIR,
        batchRows: config.RETENTION_BATCH_ROWS,
        anonymizeSecret: config.ANONYMIZE_SECRET,
        staleMs: config.DSAR_LOCK_TTL_MS,
      });
    });
  }

  /** What a subject's export reads: the database, the archive, and the cipher for their metadata. */
  exportOptions(): Promise<ExportOptions> {
    return this.#lifetimes.once('exports', async () => {
      const { config, pool, metrics } = this.deps;
      return {
        pool,
        store: (await this.retention()).store,
        metrics,
        workDir: config.ARCHIVE_WORK_DIR,
        anonymizeSecret: config.ANONYMIZE_SECRET,
        cipher: await this.cipher(),
      };
    });
  }

  /** Encryption of the configured metadata keys; undefined when none is configured. */
  cipher(): Promise<MetadataCipher | undefined> {
    const { encryption } = this.#opts;
    const { metrics } = this.deps;
    return this.#lifetimes.once('cipher', () => encryption && new MetadataCipher({ ...encryption, metrics }));
  }

  /** Every worker's breaker and checkpoint state, in Redis. */
  workerStatus(): Promise<WorkerStatusBoard> {
    const { redis, redisKeys } = this.deps;
    return this.#lifetimes.once('worker-status', () => new WorkerStatusBoard({ redis, keys: redisKeys }));
  }

  deadLetters(): Promise<DeadLetterStream> {
    const { redis, redisKeys } = this.deps;
    return this.#lifetimes.once('dead-letters', () => new DeadLetterStream({ redis, keys: redisKeys }));
  }

  /** Buffer length and memory against the high-water marks (backpressure), sampled and exported. */
  monitor(): Promise<BufferMonitor> {
    const { config, redis, redisKeys, logger, metrics } = this.deps;
    return this.#lifetimes.once(
      'monitor',
      () => {
        const monitor = new BufferMonitor({
          redis,
          keys: redisKeys,
          maxEvents: config.BUFFER_MAX_EVENTS,
          maxMemoryRatio: config.BUFFER_MAX_MEMORY_RATIO,
          logger,
        });
        monitor.start();
        registerBufferMetrics(metrics.registry, monitor);
        return monitor;
      },
      (monitor) => monitor.stop(),
    );
  }

  /**
   * How many workers the buffer needs. In the API rather than the workers: it sees the whole
   * buffer and every worker, and reports even when no worker runs (KEDA scales the workers
   * on it: ops/k8s).
   */
  demand(): Promise<WorkerDemand> {
    const { redis, redisKeys, logger, metrics } = this.deps;
    return this.#lifetimes.once(
      'worker-demand',
      async () => {
        const demand = new WorkerDemand({
          redis,
          keys: redisKeys,
          workers: await this.workerStatus(),
          logger,
        });
        demand.start();
        registerAutoscaleMetrics(metrics.registry, demand);
        return demand;
      },
      (demand) => demand.stop(),
    );
  }

  producer(): Promise<EventProducer> {
    const { config, redis, redisKeys } = this.deps;
    return this.#lifetimes.once(
      'producer',
      () =>
        new EventProducer({
          redis,
          keys: redisKeys,
          dedupeWindowS: config.DEDUPE_WINDOW_S,
          waitReplicas: config.REDIS_WAIT_REPLICAS,
          waitTimeoutMs: config.REDIS_WAIT_TIMEOUT_MS,
        }),
    );
  }

  /** API keys by hash, cached; revocations reach every API process over pub/sub. */
  keyResolver(): Promise<KeyResolver> {
    const { config, redis, redisKeys, logger, db } = this.deps;
    return this.#lifetimes.once(
      'key-resolver',
      () =>
        new KeyResolver({
          findByHash: (hash) => findActiveKeyByHash(db, hash),
          adminApiKey: config.ADMIN_API_KEY,
          logger,
          invalidations: new KeyInvalidations({
            redis,
            subscriber: this.deps.blockingRedis(1_000),
            channel: redisKeys.keyInvalidations,
            logger,
          }),
        }),
    );
  }

  rateLimiter(): Promise<RedisRateLimiter> {
    const { redis, redisKeys, logger } = this.deps;
    return this.#lifetimes.once(
      'rate-limiter',
      () => new RedisRateLimiter({ redis, keys: redisKeys, logger }),
    );
  }

  /** This process's member of the consumer group, on a blocking connection of its own. */
  consumer(): Promise<StreamConsumer> {
    const { config, redisKeys, logger } = this.deps;
    return this.#lifetimes.once(
      'consumer',
      () =>
        new StreamConsumer({
          redis: this.deps.blockingRedis(config.READ_BLOCK_MS),
          keys: redisKeys,
          consumerName: `${hostname()}-${process.pid}`,
          logger,
        }),
    );
  }

  /** Partitions ahead of time and stream trimming; a database down at start is retried hourly. */
  maintenance(): Promise<Maintenance> {
    const { config, pool, logger } = this.deps;
    return this.#lifetimes.once(
      'maintenance',
      async () => {
        const consumer = await this.consumer();
        const maintenance = new Maintenance({
          pool,
          consumer,
          maxRetentionDays: maxRetentionDays(config),
          logger,
        });
        await maintenance.ensurePartitions().catch((err: unknown) => {
          logger.warn({ err: String(err) }, 'partition maintenance failed at start; retrying hourly');
        });
        maintenance.start();
        return maintenance;
      },
      (maintenance) => maintenance.stop(),
    );
  }

  /** The worker's own checkpoint directory under CHECKPOINT_DIR. */
  checkpoint(): Promise<Checkpoint> {
    return this.#lifetimes.once(
      'checkpoint',
      () => openOwnCheckpoint(this.#slotOptions()),
      (checkpoint) => checkpoint.close(),
    );
  }

  /** The worker, built but not started; closing it finishes the batches in hand. */
  worker(): Promise<Worker> {
    return this.#lifetimes.once(
      'worker',
      async () => {
        const { config, pool, logger, metrics } = this.deps;
        const checkpoint = await this.checkpoint();
        let worker: Worker | undefined;
        const breaker = new DatabaseBreaker({
          config,
          logger,
          metrics,
          onChange: () => void worker?.publishStatus(),
        });
        worker = new Worker({
          consumer: await this.consumer(),
          deadLetters: await this.deadLetters(),
          pool,
          breaker,
          checkpoint,
          replayOrphans: (persist, stop) =>
            replayOrphanedCheckpoints({ ...this.#slotOptions(), own: checkpoint.dir }, persist, stop),
          statusBoard: await this.workerStatus(),
          subjects: await this.subjects(),
          logger,
          metrics,
          config,
        });
        return worker;
      },
      (worker) => worker.stop(),
    );
  }

  #slotOptions(): SlotOptions {
    const { config, logger, metrics } = this.deps;
    return { root: config.CHECKPOINT_DIR, segmentBytes: config.CHECKPOINT_SEGMENT_BYTES, logger, metrics };
  }

  /**
   * Closes every service built, newest first (each once; a failure is logged and the rest
   * still close), then the Redis connections and the pool, then flushes telemetry.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#lifetimes.close();
      await this.deps.close();
      await this.#opts
        .stopTracing?.()
        .catch((err: unknown) =>
          this.deps.logger.warn({ err: String(err) }, 'trace export at shutdown failed'),
        );
    })();
    return this.#closing;
  }
}
