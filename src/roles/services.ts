import { hostname } from 'node:os';
import type { StreamConsumer } from '../buffer/consumer.ts';
import { DeadLetterStream } from '../buffer/dead-letter.ts';
import type { BufferMonitor } from '../buffer/monitor.ts';
import type { EventProducer } from '../buffer/producer.ts';
import { WorkerStatusBoard } from '../buffer/worker-status.ts';
import type { ErasureService } from '../compliance/erasure.ts';
import type { ExportOptions } from '../compliance/export.ts';
import { MetadataCipher, type MetadataEncryption } from '../compliance/metadata-cipher.ts';
import type { SubjectRegistry } from '../compliance/subjects.ts';
import type { Config } from '../config.ts';
import { createDeps, type Deps } from '../deps.ts';
import type { KeyResolver } from '../http/key-resolver.ts';
import { RedisRateLimiter } from '../http/middleware/rate-limit.ts';
import type { PlanRegistry } from '../http/plan-registry.ts';
import { WebhookSources } from '../http/webhook-sources.ts';
import type { LiveHub } from '../live/hub.ts';
import { Materializers } from '../materialize/runner.ts';
import type { RetentionService } from '../retention/service.ts';
import type { SourceRunners } from '../sources/runner.ts';
import { SourceSecrets } from '../sources/secrets.ts';
import { ReadRouter } from '../store/read-replica.ts';
import type { WorkerDemand } from '../telemetry/autoscale-metrics.ts';
import type { Checkpoint } from '../worker/checkpoint/checkpoint.ts';
import { openOwnCheckpoint } from '../worker/checkpoint/slots.ts';
import type { Maintenance } from '../worker/maintenance.ts';
import type { Worker } from '../worker/worker.ts';
import {
  createKeyResolver,
  createProducer,
  startDemand,
  startLive,
  startMonitor,
  startPlans,
} from './api-services.ts';
import { createErasure, createRetention, exportOptions, startSubjects } from './compliance-services.ts';
import { Lifetimes } from './lifetimes.ts';
import { createSourceRunners } from './source-services.ts';
import { createConsumer, createWorker, slotOptions, startMaintenance } from './worker-services.ts';

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
    return this.#lifetimes.once(
      'retention',
      () => createRetention(this.deps),
      (retention) => retention.close(),
    );
  }

  /** Opted-out subjects and erasures in progress, kept current over Redis pub/sub. */
  subjects(): Promise<SubjectRegistry> {
    return this.#lifetimes.once(
      'subjects',
      () => startSubjects(this.deps),
      (subjects) => subjects.stop(),
    );
  }

  /** Erasure requests; polling for them is started (and recorded) by the worker role. */
  erasure(): Promise<ErasureService> {
    return this.#lifetimes.once('erasure', async () => {
      const subjects = await this.subjects();
      const { store } = await this.retention();
      return createErasure(this.deps, { store, subjects, workers: await this.workerStatus() });
    });
  }

  exportOptions(): Promise<ExportOptions> {
    return this.#lifetimes.once('exports', async () =>
      exportOptions(
        this.deps,
        (await this.retention()).store,
        await this.cipher(),
        await this.deadLetters(),
        await this.reads(),
      ),
    );
  }

  /**
   * Where reads run: DATABASE_READ_URL while it answers and keeps within READ_MAX_LAG_S, else
   * the primary (checked every READ_LAG_CHECK_MS from now on; the primary until the first check).
   */
  reads(): Promise<ReadRouter> {
    const { config, pool, db, logger, metrics } = this.deps;
    return this.#lifetimes.once(
      'reads',
      () => {
        const reads = new ReadRouter({
          primary: { pool, db },
          replicaUrl: config.DATABASE_READ_URL,
          maxLagS: config.READ_MAX_LAG_S,
          checkEveryMs: config.READ_LAG_CHECK_MS,
          poolSize: config.DATABASE_POOL_SIZE,
          applicationName: `tributary-${this.#opts.role}-reads`,
          logger,
          metrics,
        });
        reads.start();
        return reads;
      },
      (reads) => reads.close(),
    );
  }

  /** Encryption of the configured metadata keys; undefined when none is configured. */
  cipher(): Promise<MetadataCipher | undefined> {
    const { encryption } = this.#opts;
    return this.#lifetimes.once(
      'cipher',
      () => encryption && new MetadataCipher({ ...encryption, metrics: this.deps.metrics }),
    );
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

  monitor(): Promise<BufferMonitor> {
    return this.#lifetimes.once(
      'monitor',
      () => startMonitor(this.deps),
      (monitor) => monitor.stop(),
    );
  }

  demand(): Promise<WorkerDemand> {
    return this.#lifetimes.once(
      'worker-demand',
      async () => startDemand(this.deps, await this.workerStatus()),
      (demand) => demand.stop(),
    );
  }

  producer(): Promise<EventProducer> {
    return this.#lifetimes.once('producer', () => createProducer(this.deps));
  }

  /** The live view (undefined when turned off); the API's listener ends its streams first at shutdown. */
  live(): Promise<LiveHub | undefined> {
    return this.#lifetimes.once(
      'live',
      () => startLive(this.deps),
      (live) => live?.close(),
    );
  }

  /** Tracking plans, every service's, kept current over Redis pub/sub. */
  plans(): Promise<PlanRegistry> {
    return this.#lifetimes.once(
      'plans',
      () => startPlans(this.deps),
      (plans) => plans.stop(),
    );
  }

  /** Sources' secrets, sealed and opened with METADATA_ENCRYPTION_KEYS (§15). */
  sourceSecrets(): Promise<SourceSecrets> {
    return this.#lifetimes.once('source-secrets', async () => new SourceSecrets(await this.cipher()));
  }

  /** Webhook sources by id, cached, for the API's webhook route. */
  webhooks(): Promise<WebhookSources> {
    const { pool, logger } = this.deps;
    return this.#lifetimes.once(
      'webhooks',
      async () => new WebhookSources({ pool, secrets: await this.sourceSecrets(), logger }),
      (webhooks) => webhooks.close(),
    );
  }

  /** This `work` process's source runners, not started; closing them ends each run at a batch boundary. */
  /** This process's materialisation runners (§17), not started. */
  materializers(): Promise<Materializers> {
    const { config, pool, logger, metrics } = this.deps;
    return this.#lifetimes.once(
      'materializers',
      async () =>
        new Materializers({
          pool,
          logger,
          metrics,
          config,
          holder: `${hostname()}-${process.pid}`,
          // Rebuilds that read archived months back (§17) read them from the retention's store.
          archive: { store: (await this.retention()).store, workDir: config.ARCHIVE_WORK_DIR },
        }),
      (runners) => runners.stop(),
    );
  }

  sources(): Promise<SourceRunners> {
    return this.#lifetimes.once(
      'sources',
      async () =>
        createSourceRunners(this.deps, {
          secrets: await this.sourceSecrets(),
          producer: await this.producer(),
          monitor: await this.monitor(),
          subjects: await this.subjects(),
          plans: await this.plans(),
          cipher: await this.cipher(),
        }),
      (runners) => runners.stop(),
    );
  }

  keyResolver(): Promise<KeyResolver> {
    return this.#lifetimes.once(
      'key-resolver',
      () => createKeyResolver(this.deps),
      (resolver) => resolver.close(),
    );
  }

  rateLimiter(): Promise<RedisRateLimiter> {
    const { redis, redisKeys, logger } = this.deps;
    return this.#lifetimes.once(
      'rate-limiter',
      () => new RedisRateLimiter({ redis, keys: redisKeys, logger }),
    );
  }

  consumer(): Promise<StreamConsumer> {
    return this.#lifetimes.once('consumer', () => createConsumer(this.deps));
  }

  maintenance(): Promise<Maintenance> {
    return this.#lifetimes.once(
      'maintenance',
      async () => startMaintenance(this.deps, await this.consumer()),
      (maintenance) => maintenance.stop(),
    );
  }

  /** The worker's own checkpoint directory under CHECKPOINT_DIR. */
  checkpoint(): Promise<Checkpoint> {
    return this.#lifetimes.once(
      'checkpoint',
      () => openOwnCheckpoint(slotOptions(this.deps)),
      (checkpoint) => checkpoint.close(),
    );
  }

  /** The worker, built but not started; closing it finishes the batches in hand. */
  worker(): Promise<Worker> {
    return this.#lifetimes.once(
      'worker',
      async () =>
        createWorker(this.deps, {
          checkpoint: await this.checkpoint(),
          consumer: await this.consumer(),
          deadLetters: await this.deadLetters(),
          statusBoard: await this.workerStatus(),
          subjects: await this.subjects(),
        }),
      (worker) => worker.stop(),
    );
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
        .catch((err: unknown) => this.deps.logger.warn({ err }, 'trace export at shutdown failed'));
    })();
    return this.#closing;
  }
}
