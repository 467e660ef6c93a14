import type pg from 'pg';
import type { Logger } from 'pino';
import type { StreamConsumer } from '../buffer/consumer.ts';
import { ensurePartitions, requiredPartitions } from '../store/partitions.ts';

export interface MaintenanceOptions {
  pool: pg.Pool;
  consumer: StreamConsumer;
  maxRetentionDays: number;
  logger: Logger;
  /** Partition check interval: hourly by default, so a database that was down at start is caught up soon. */
  partitionsEveryMs?: number;
  /** Stream trim interval. */
  trimEveryMs?: number;
}

/**
 * Background upkeep run by workers: monthly partitions ahead of time (at start and
 * daily) and a trim of acknowledged entries left behind by a crash between XACK and XDEL.
 */
export class Maintenance {
  readonly #o: MaintenanceOptions;
  readonly #timers: NodeJS.Timeout[] = [];

  constructor(opts: MaintenanceOptions) {
    this.#o = opts;
  }

  async ensurePartitions(): Promise<string[]> {
    const created = await ensurePartitions(
      this.#o.pool,
      requiredPartitions(new Date(), this.#o.maxRetentionDays),
    );
    if (created.length > 0) this.#o.logger.info({ created }, 'partitions created');
    return created;
  }

  start(): void {
    const run = (what: string, fn: () => Promise<unknown>) => () => {
      fn().catch((err: unknown) => this.#o.logger.warn({ err }, `${what} failed; will retry`));
    };
    const partitions = run('partition maintenance', () => this.ensurePartitions());
    const trim = run('stream trim', () => this.#o.consumer.trimAcknowledged());
    this.#timers.push(setInterval(partitions, this.#o.partitionsEveryMs ?? 3_600_000));
    this.#timers.push(setInterval(trim, this.#o.trimEveryMs ?? 60_000));
    for (const t of this.#timers) t.unref();
  }

  stop(): void {
    for (const t of this.#timers.splice(0)) clearInterval(t);
  }
}
