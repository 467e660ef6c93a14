import type pg from 'pg';
import { Gauge, type Registry } from 'prom-client';

/** Rows counted at most, so a scrape stays cheap however full the default partition gets. */
const COUNT_CAP = 10_000;

/**
 * `tributary_retention_last_success_timestamp_seconds`: from `retention_runs`, so every
 * worker reports the same value whichever process ran the pass.
 *
 * `tributary_default_partition_rows`: rows in `events_default`, which catches events outside
 * every monthly partition and should stay empty (counted up to 10,000 per scrape).
 */
export function registerStoreMetrics(registry: Registry, pool: pg.Pool): void {
  new Gauge({
    name: 'tributary_default_partition_rows',
    help: `Rows in events_default, which should stay empty (counted up to ${COUNT_CAP})`,
    registers: [registry],
    aggregator: 'max',
    async collect() {
      this.reset();
      try {
        const { rows } = await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM (SELECT 1 FROM events_default LIMIT ${COUNT_CAP}) AS s`,
        );
        this.set(rows[0]?.n ?? 0);
      } catch {
        // Database unavailable: no sample rather than a wrong one.
      }
    },
  });
  new Gauge({
    name: 'tributary_retention_last_success_timestamp_seconds',
    help: 'When the newest completed retention pass (any process) finished, Unix seconds; 0 when none has',
    registers: [registry],
    aggregator: 'max',
    async collect() {
      this.reset();
      try {
        const { rows } = await pool.query<{ t: number | null }>(
          `SELECT extract(epoch FROM max(finished_at))::float8 AS t FROM retention_runs WHERE status = 'completed' AND trigger <> 'erasure'`,
        );
        this.set(rows[0]?.t ?? 0);
      } catch {
        // Database unavailable: no sample rather than a wrong one.
      }
    },
  });
}
