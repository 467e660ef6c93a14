import type pg from 'pg';
import type { Logger } from 'pino';
import type { Metrics } from '../telemetry/metrics.ts';
import { createDb, createPool, type Db } from './db.ts';
import { classifyDbError } from './errors.ts';

/** A pool and its drizzle handle: where a read runs. */
export interface ReadTarget {
  pool: pg.Pool;
  db: Db;
}

/** Where reads go now, and why: shown by `/health` and `/health/database`. */
export interface ReadRoute {
  /** Whether DATABASE_READ_URL is set. */
  replicaConfigured: boolean;
  target: 'replica' | 'primary';
  /** The replica's replay lag at its last check, in seconds; null when unknown (unreachable, or never checked). */
  lagS: number | null;
  /** Why reads are on the primary while a replica is configured; null otherwise. */
  reason: string | null;
  /** ISO time of the last check; null before the first. */
  checkedAt: string | null;
}

export interface ReadRouterOptions {
  primary: ReadTarget;
  /** DATABASE_READ_URL; absent, every read runs on the primary. */
  replicaUrl?: string | undefined;
  maxLagS: number;
  checkEveryMs: number;
  poolSize: number;
  applicationName: string;
  logger: Logger;
  metrics: Metrics;
}

/**
 * The replica's replay lag in seconds: 0 when it is not in recovery (a primary given as the
 * replica), or when it streams from its primary and has replayed everything it received;
 * else the age of the last transaction it replayed (`pg_last_xact_replay_timestamp()`), which
 * grows while replay is paused or behind; null when it never replayed one.
 */
export async function replicaLagSeconds(pool: pg.Pool): Promise<number | null> {
  const { rows } = await pool.query<{ lag: number | null }>(
    `SELECT CASE
       WHEN NOT pg_is_in_recovery() THEN 0
       WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
         AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN 0
       ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8
     END AS lag`,
  );
  return rows[0]?.lag ?? null;
}

/** A replica failure that the same read on the primary can get past. */
function replicaTrouble(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  // 40001: cancelled by a conflict with recovery on a hot standby; 57014: cancelled (a standby's
  // max_standby_streaming_delay, or the statement timeout on a replica that fell behind).
  return classifyDbError(err) === 'unavailable' || code === '40001' || code === '57014';
}

/**
 * Sends reads (`GET /v1/events`, exports, the business summary) to DATABASE_READ_URL while it
 * answers and its replay lag is at most READ_MAX_LAG_S, checked every READ_LAG_CHECK_MS;
 * otherwise to the primary, until a check finds it back. A read that fails on the replica
 * because the replica went away (or a recovery conflict cancelled it) is run again on the
 * primary at once, and reads stay there until the next good check. Writes never come here.
 */
export class ReadRouter {
  readonly #o: ReadRouterOptions;
  readonly #replica: ReadTarget | undefined;
  #onReplica = false;
  #route: ReadRoute;
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;

  constructor(opts: ReadRouterOptions) {
    this.#o = opts;
    if (opts.replicaUrl) {
      const pool = createPool({
        url: opts.replicaUrl,
        max: opts.poolSize,
        applicationName: opts.applicationName,
      });
      this.#replica = { pool, db: createDb(pool) };
    }
    this.#route = {
      replicaConfigured: this.#replica !== undefined,
      target: 'primary',
      lagS: null,
      reason: this.#replica ? 'not checked yet' : null,
      checkedAt: null,
    };
    opts.metrics.readsOnReplica.set(0);
  }

  /** Checks the replica now and every READ_LAG_CHECK_MS (reads stay on the primary until a check finds it usable). */
  start(): void {
    if (!this.#replica) return;
    this.#timer = setInterval(() => void this.check(), this.#o.checkEveryMs);
    this.#timer.unref();
    void this.check();
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#checking;
    await this.#replica?.pool.end().catch(() => {});
  }

  get route(): ReadRoute {
    return { ...this.#route };
  }

  /** Runs `fn` on the replica when it is usable, else on the primary; a replica failure is retried on the primary. */
  async read<T>(fn: (target: ReadTarget) => Promise<T>): Promise<T> {
    const replica = this.#replica;
    if (!replica || !this.#onReplica) return fn(this.#o.primary);
    try {
      return await fn(replica);
    } catch (err) {
      if (!replicaTrouble(err)) throw err;
      this.#set(
        'primary',
        this.#route.lagS,
        `a read failed: ${err instanceof Error ? err.message : String(err)}`,
      );
      return fn(this.#o.primary);
    }
  }

  /** Measures the replica's lag and moves reads accordingly. One check at a time. */
  check(): Promise<void> {
    this.#checking ??= this.#check().finally(() => {
      this.#checking = undefined;
    });
    return this.#checking;
  }

  async #check(): Promise<void> {
    const replica = this.#replica;
    if (!replica) return;
    const { maxLagS, metrics } = this.#o;
    let lag: number | null;
    try {
      lag = await withTimeout(replicaLagSeconds(replica.pool), Math.max(1_000, this.#o.checkEveryMs));
    } catch (err) {
      this.#set('primary', null, `unreachable: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    if (lag !== null) metrics.replicaLag.set(lag);
    if (lag === null) this.#set('primary', null, 'replay lag unknown (no transaction replayed yet)');
    else if (lag > maxLagS)
      this.#set('primary', lag, `replay lag ${lag.toFixed(1)} s > READ_MAX_LAG_S ${maxLagS}`);
    else this.#set('replica', lag, null);
  }

  #set(target: ReadRoute['target'], lagS: number | null, reason: string | null): void {
    const moved = target !== this.#route.target;
    this.#route = {
      replicaConfigured: true,
      target,
      lagS: lagS === null ? null : Math.round(lagS * 1000) / 1000,
      reason,
      checkedAt: new Date().toISOString(),
    };
    this.#onReplica = target === 'replica';
    if (!moved) return;
    const { logger, metrics } = this.#o;
    metrics.readsOnReplica.set(this.#onReplica ? 1 : 0);
    metrics.readTargetChanges.inc({ to: target });
    if (target === 'replica') logger.info({ reads: target, lagS }, 'reads go to the replica');
    else logger.warn({ reads: target, reason }, 'reads go to the primary');
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
