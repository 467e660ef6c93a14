import { readdir, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Cron } from 'croner';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { ObjectStore } from '../archive/object-store.ts';
import type { Config } from '../config.ts';
import { lastCompletedRun } from '../store/retention-runs.repo.ts';
import { RetentionBusyError, RunLease, type RunTrigger } from '../store/run-leases.repo.ts';
import { errorSummary } from '../telemetry/log-errors.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { inSpan } from '../telemetry/tracing.ts';
import { runPass } from './pass.ts';
import type { Month } from './policy.ts';
import { type RestoreResult, restoreArchives } from './restore.ts';

const RUN_DIR = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Scratch directories of earlier passes (named by run id) that were killed before they
 * could clean up. Only one pass runs at a time, so none of them is in use.
 */
async function removeStaleScratch(root: string): Promise<void> {
  const entries = await readdir(root).catch(() => [] as string[]);
  for (const name of entries.filter((n) => RUN_DIR.test(n))) {
    await rm(join(root, name), { recursive: true, force: true }).catch(() => {});
  }
}

export type RetentionConfig = Pick<
  Config,
  | 'RETENTION_DAYS'
  | 'RETENTION_BY_SERVICE'
  | 'RETENTION_SCHEDULE'
  | 'RETENTION_LOCK_TTL_MS'
  | 'RETENTION_BATCH_ROWS'
  | 'RESTORE_HOLD_DAYS'
  | 'ARCHIVE_WORK_DIR'
  | 'ANONYMIZE_AFTER_DAYS'
  | 'ANONYMIZE_SECRET'
  | 'PII_METADATA_KEYS'
  | 'DATABASE_URL'
>;

export interface RetentionServiceOptions {
  pool: pg.Pool;
  store: ObjectStore;
  logger: Logger;
  metrics: Metrics;
  config: RetentionConfig;
}

/**
 * Runs retention passes (on demand and on schedule) and restores. One pass at a time
 * across every process, through the lease in `retention_runs`.
 */
export class RetentionService {
  readonly #o: RetentionServiceOptions;
  readonly #holder = `${hostname()}-${process.pid}`;
  #current: Promise<void> | undefined;
  #cron: Cron | undefined;
  #startTimer: NodeJS.Timeout | undefined;

  constructor(opts: RetentionServiceOptions) {
    this.#o = opts;
  }

  get store(): ObjectStore {
    return this.#o.store;
  }

  /**
   * Starts a pass and returns its run id at once; `done` settles when it ends (never
   * rejects: failures are recorded in the run). Throws RetentionBusyError when one runs.
   */
  async start(trigger: RunTrigger): Promise<{ runId: string; done: Promise<'completed' | 'failed'> }> {
    const { pool, config, logger, metrics } = this.#o;
    const lease = await RunLease.acquire(pool, trigger, this.#holder, config.RETENTION_LOCK_TTL_MS);
    logger.info({ runId: lease.id, trigger }, 'retention pass started');
    await removeStaleScratch(config.ARCHIVE_WORK_DIR);
    const started = process.hrtime.bigint();
    const done = inSpan('retention.pass', { attributes: { 'tributary.run_id': lease.id } }, () =>
      runPass(
        {
          pool,
          databaseUrl: config.DATABASE_URL,
          store: this.#o.store,
          logger,
          metrics,
          policy: { defaultDays: config.RETENTION_DAYS, byService: config.RETENTION_BY_SERVICE },
          workDir: join(config.ARCHIVE_WORK_DIR, lease.id),
          batchRows: config.RETENTION_BATCH_ROWS,
          ...(config.ANONYMIZE_AFTER_DAYS !== undefined && config.ANONYMIZE_SECRET !== undefined
            ? {
                anonymize: {
                  afterDays: config.ANONYMIZE_AFTER_DAYS,
                  secret: config.ANONYMIZE_SECRET,
                  piiKeys: config.PII_METADATA_KEYS,
                },
              }
            : {}),
          now: new Date(),
        },
        lease,
      ),
    ).then(
      async () => {
        await lease.finish('completed');
        logger.info({ runId: lease.id }, 'retention pass completed');
        return 'completed' as const;
      },
      async (err: unknown) => {
        // Kept in the run (GET /v1/admin/retention/runs/:id) by the same rule as the logs.
        await lease.finish('failed', errorSummary(err)).catch(() => {});
        logger.error({ runId: lease.id, err }, 'retention pass failed');
        return 'failed' as const;
      },
    );
    const tracked = done.then((outcome) => {
      metrics.retentionPasses.inc({ outcome });
      metrics.retentionPassDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    });
    this.#current = tracked;
    void tracked.finally(() => {
      if (this.#current === tracked) this.#current = undefined;
    });
    return { runId: lease.id, done };
  }

  restore(from: Month, to: Month, service?: string): Promise<RestoreResult> {
    const { pool, store, logger, config, metrics } = this.#o;
    return restoreArchives({
      pool,
      databaseUrl: config.DATABASE_URL,
      store,
      logger,
      workDir: join(this.#o.config.ARCHIVE_WORK_DIR, `restore-${process.pid}-${Date.now()}`),
      from,
      to,
      ...(service !== undefined ? { service } : {}),
      holdDays: config.RESTORE_HOLD_DAYS,
    }).then((r) => {
      metrics.retentionRowsRestored.inc(r.inserted);
      return r;
    });
  }

  /**
   * Runs passes on RETENTION_SCHEDULE (UTC), and once soon after start when the last
   * completed pass is older than the schedule's previous slot (all runners were down).
   */
  startSchedule(): void {
    const expr = this.#o.config.RETENTION_SCHEDULE;
    if (expr === 'off') return;
    this.#cron = new Cron(expr, { timezone: 'UTC', protect: true }, () => void this.#tick());
    this.#startTimer = setTimeout(() => void this.#catchUp(expr), 5_000 + Math.random() * 10_000);
    this.#startTimer.unref();
  }

  async #catchUp(expr: string): Promise<void> {
    try {
      const last = await lastCompletedRun(this.#o.pool);
      const next = last ? new Cron(expr, { timezone: 'UTC', paused: true }).nextRun(last) : null;
      if (!last || (next && next.getTime() < Date.now())) await this.#tick();
    } catch (err) {
      this.#o.logger.warn({ err }, 'retention catch-up check failed');
    }
  }

  async #tick(): Promise<void> {
    try {
      const { done } = await this.start('schedule');
      await done;
    } catch (err) {
      if (err instanceof RetentionBusyError) {
        this.#o.logger.info({ runId: err.runId }, 'retention pass already running elsewhere');
      } else {
        this.#o.logger.warn({ err }, 'scheduled retention pass could not start');
      }
    }
  }

  /** Stops scheduling and closes the object store's connections. */
  async close(): Promise<void> {
    await this.stop();
    await this.#o.store.close();
  }

  /** Stops scheduling; a pass in progress is left to finish until the process exits (a later pass resumes it). */
  async stop(waitMs = 0): Promise<void> {
    this.#cron?.stop();
    clearTimeout(this.#startTimer);
    if (this.#current && waitMs > 0) {
      await Promise.race([this.#current, new Promise((r) => setTimeout(r, waitMs).unref())]);
    }
  }
}
