import type pg from 'pg';

/*
 * The single-runner lease that retention passes and erasures' archive rewrites share, kept
 * as rows of `retention_runs`. Hand-written SQL, moved unchanged from retention/runs.ts:
 * the takeover compares heartbeats with the database's clock (`now()`), the counter column
 * is chosen per call, and the step log is a jsonb append (`steps || $2::jsonb`).
 */

/** `erasure`: an erasure job holding the lease while it rewrites archive objects. */
export type RunTrigger = 'schedule' | 'manual' | 'cli' | 'erasure';

/** Another pass holds the lease; `runId` is the one in progress. */
export class RetentionBusyError extends Error {
  override readonly name = 'RetentionBusyError';
  readonly runId: string;
  constructor(runId: string) {
    super(`retention pass ${runId} is already running`);
    this.runId = runId;
  }
}

/** The lease was taken over (this runner stalled past the TTL): stop at once. */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError';
}

export type RunCounter = 'rows_archived' | 'bytes_archived' | 'rows_deleted' | 'rows_anonymized';

/**
 * The single-runner lease, kept in `retention_runs` (used by retention passes and by
 * erasures while they rewrite archive objects): a partial unique index admits one
 * `running` row. The holder heartbeats; a row whose heartbeat is older than the TTL
 * belongs to a crashed or stalled runner and is marked `abandoned` by the next starter.
 * Nothing here holds a session (no advisory lock), so it works through PgBouncer.
 */
export class RunLease {
  readonly #pool: pg.Pool;
  readonly #ttlMs: number;
  readonly id: string;
  #timer: NodeJS.Timeout | undefined;
  #lost = false;

  private constructor(pool: pg.Pool, ttlMs: number, id: string) {
    this.#pool = pool;
    this.#ttlMs = ttlMs;
    this.id = id;
  }

  /**
   * Takes the lease: first marks `abandoned` any running row whose heartbeat is older than
   * `ttlMs` (its runner crashed or stalled), then inserts this runner's row, which heartbeats
   * every `ttlMs / 4` (at least 200 ms) until {@link finish}.
   * @throws RetentionBusyError when a live runner holds it.
   */
  static async acquire(pool: pg.Pool, trigger: RunTrigger, holder: string, ttlMs: number): Promise<RunLease> {
    await pool.query(
      `UPDATE retention_runs
          SET status = 'abandoned', finished_at = now(),
              error = 'its runner stopped reporting progress (crashed or stalled); taken over'
        WHERE status = 'running' AND heartbeat_at < now() - $1::int * interval '1 millisecond'`,
      [ttlMs],
    );
    try {
      const { rows } = await pool.query<{ id: string }>(
        `INSERT INTO retention_runs (trigger, status, holder) VALUES ($1, 'running', $2) RETURNING id`,
        [trigger, holder],
      );
      const lease = new RunLease(pool, ttlMs, (rows[0] as { id: string }).id);
      lease.#startHeartbeat();
      return lease;
    } catch (err) {
      if ((err as { code?: string }).code !== '23505') throw err;
      const running = await pool.query<{ id: string }>(
        `SELECT id FROM retention_runs WHERE status = 'running'`,
      );
      throw new RetentionBusyError(running.rows[0]?.id ?? 'unknown');
    }
  }

  #startHeartbeat(): void {
    this.#timer = setInterval(() => void this.heartbeat().catch(() => {}), Math.max(200, this.#ttlMs / 4));
    this.#timer.unref();
  }

  /** Extends the lease; marks it lost when another runner took it over. */
  async heartbeat(): Promise<void> {
    const res = await this.#pool.query(
      `UPDATE retention_runs SET heartbeat_at = now() WHERE id = $1 AND status = 'running'`,
      [this.id],
    );
    if (res.rowCount === 0) this.#lost = true;
  }

  /** Throws when the lease is gone; called between steps and batches. */
  check(): void {
    if (this.#lost) throw new LeaseLostError(`retention pass ${this.id} lost its lease`);
  }

  /** Appends a step to the run's log (which also counts as a heartbeat); throws when the lease is lost. */
  async step(step: Record<string, unknown>): Promise<void> {
    this.check();
    await this.#pool.query(
      `UPDATE retention_runs SET steps = steps || $2::jsonb, heartbeat_at = now() WHERE id = $1`,
      [this.id, JSON.stringify([{ at: new Date().toISOString(), ...step }])],
    );
  }

  /** Adds `n` to one of the run's counters. */
  async add(counter: RunCounter, n: number): Promise<void> {
    if (n === 0) return;
    await this.#pool.query(`UPDATE retention_runs SET ${counter} = ${counter} + $2 WHERE id = $1`, [
      this.id,
      n,
    ]);
  }

  /** Stops heartbeating and records the outcome, unless another runner took the lease over meanwhile. */
  async finish(outcome: 'completed' | 'failed', error?: string): Promise<void> {
    clearInterval(this.#timer);
    await this.#pool.query(
      `UPDATE retention_runs SET status = $2, finished_at = now(), error = $3 WHERE id = $1 AND status = 'running'`,
      [this.id, outcome, error ?? null],
    );
  }
}
