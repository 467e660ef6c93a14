import type pg from 'pg';
import { Gauge, type Registry } from 'prom-client';
import { countDefaultPartitionRows } from '../store/partitions.ts';
import { lastRetentionSuccess } from '../store/retention-runs.repo.ts';

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
        this.set(await countDefaultPartitionRows(pool, COUNT_CAP));
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
        this.set(await lastRetentionSuccess(pool));
      } catch {
        // Database unavailable: no sample rather than a wrong one.
      }
    },
  });
}
