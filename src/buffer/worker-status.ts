import type { MemoryReport } from '../telemetry/resources.ts';
import type { BufferKeys } from './keys.ts';
import type { RedisLike } from './redis-client.ts';

/**
 * A worker's database circuit breaker state (worker/breaker.ts). Defined here, with its two
 * orderings, because the API reads it from {@link WorkerStatus} (and `http/` never imports
 * `worker/`).
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

/**
 * The value of `tributary_circuit_breaker_state` for each state: 0 closed, 1 open,
 * 2 half-open. Codes, not a scale (half-open is not worse than open): dashboards and alert
 * rules (grafana/, ops/prometheus/alerts.yml) read these numbers, so they never change.
 * To compare states use {@link BREAKER_SEVERITY}.
 */
export const BREAKER_GAUGE_VALUE: Readonly<Record<BreakerState, number>> = {
  closed: 0,
  open: 1,
  'half-open': 2,
};

/**
 * How far from normal each state is, for the worst of several workers: closed < half-open
 * (one probe call let through) < open (no call goes through).
 */
export const BREAKER_SEVERITY: Readonly<Record<BreakerState, number>> = {
  closed: 0,
  'half-open': 1,
  open: 2,
};

/** What a worker reports about itself, for health endpoints of any process. */
export interface WorkerStatus {
  /** Consumer name (host-pid). */
  name: string;
  breaker: BreakerState;
  /** ISO time the breaker entered its state. */
  breakerSince: string;
  /** What opened the breaker last (`connection`, `slow_insert`, `error_rate`), and why; absent if it never opened. */
  breakerTrigger?: string | undefined;
  breakerReason?: string | undefined;
  checkpoint: { segments: number; bytes: number; events: number; failed: string | undefined };
  /** The checkpoint volume's space; `low` below CHECKPOINT_MIN_FREE_BYTES. Absent from workers of older versions. */
  volume?: { path: string; freeBytes: number; totalBytes: number; low: boolean } | undefined;
  /** The worker process's memory. */
  memory?: MemoryReport | undefined;
  /** ISO time of this report. */
  at: string;
}

/** A status older than this belongs to a worker that stopped or lost Redis. */
export const WORKER_STATUS_TTL_MS = 15_000;
/** Reports older than this are removed when read. */
const FORGET_AFTER_MS = 3_600_000;

/**
 * Worker statuses in one Redis hash, so the API (another process, maybe another host)
 * can show every worker's breaker and checkpoint in `/health/database`.
 */
export class WorkerStatusBoard {
  readonly #redis: RedisLike;
  readonly #key: string;

  constructor(opts: { redis: RedisLike; keys: BufferKeys }) {
    this.#redis = opts.redis;
    this.#key = opts.keys.workers;
  }

  async publish(status: WorkerStatus): Promise<void> {
    await this.#redis.hset(this.#key, status.name, JSON.stringify(status));
  }

  async remove(name: string): Promise<void> {
    await this.#redis.hdel(this.#key, name);
  }

  /** Statuses reported within {@link WORKER_STATUS_TTL_MS}; long-gone workers are forgotten. */
  async live(now = Date.now()): Promise<WorkerStatus[]> {
    const all = await this.#redis.hgetall(this.#key);
    const live: WorkerStatus[] = [];
    const forget: string[] = [];
    for (const [name, raw] of Object.entries(all)) {
      let status: WorkerStatus;
      try {
        status = JSON.parse(raw) as WorkerStatus;
      } catch {
        forget.push(name);
        continue;
      }
      const age = now - Date.parse(status.at);
      if (age <= WORKER_STATUS_TTL_MS) live.push(status);
      else if (age > FORGET_AFTER_MS) forget.push(name);
    }
    if (forget.length > 0) await this.#redis.hdel(this.#key, ...forget);
    return live.sort((a, b) => a.name.localeCompare(b.name));
  }
}
