import { rm } from 'node:fs/promises';
import pg from 'pg';
import type { Logger } from 'pino';
import type { ObjectStore } from '../archive/object-store.ts';
import { inTransaction } from '../store/db.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { inSpan } from '../telemetry/tracing.ts';
import { anonymizeRows } from './anonymize.ts';
import { Archiver } from './archiver.ts';
import {
  activeHolds,
  createArchive,
  holdKey,
  markComplete,
  releaseExpiredHolds,
  unfinishedArchives,
} from './archives.repo.ts';
import { ParquetFiles } from './parquet.ts';
import {
  longestRetentionDays,
  type Month,
  monthOf,
  monthOfPartition,
  type RetentionPolicy,
  retentionCutoff,
  shortestRetentionDays,
} from './policy.ts';
import type { RunLease } from './runs.ts';

const DAY_MS = 86_400_000;

export interface PassOptions {
  pool: pg.Pool;
  databaseUrl: string;
  store: ObjectStore;
  logger: Logger;
  metrics: Metrics;
  policy: RetentionPolicy;
  workDir: string;
  batchRows: number;
  anonymize?: { afterDays: number; secret: string; piiKeys: readonly string[] };
  now: Date;
}

/** A unit of rows past retention in attached partitions: one month of one service. */
interface Unit {
  month: Month;
  service: string;
  rangeTo: Date;
}

/**
 * One retention pass, in an order that makes every step safe to interrupt:
 *  1. restored rows whose hold ended are deleted again (they are archived already);
 *  2. archives an earlier pass left unfinished are completed;
 *  3. rows older than ANONYMIZE_AFTER_DAYS are anonymised (before archiving, so the
 *     archive never holds what PostgreSQL would no longer);
 *  4. partitions entirely past the longest retention are detached (no row can enter them
 *     afterwards), archived per service, verified and dropped;
 *  5. rows past their service's retention in attached partitions (and in events_default)
 *     are archived per month and service, verified, then deleted by primary key.
 */
export async function runPass(o: PassOptions, lease: RunLease): Promise<void> {
  const parquet = await ParquetFiles.open(o.workDir);
  const archiver = new Archiver({ ...o, parquet });
  const step = (s: Record<string, unknown>) => {
    o.logger.info({ runId: lease.id, ...s }, 'retention step');
    return lease.step(s);
  };
  try {
    const released = await releaseExpiredHolds(o.pool);
    if (released > 0) await step({ step: 'holds.released', archives: released });

    for (const a of await unfinishedArchives(o.pool)) {
      lease.check();
      await step({ step: 'archive.resume', archiveId: a.id, status: a.status, source: a.source });
      if (a.source === 'events') {
        const copy = a.status === 'writing' ? await archiver.write(lease, a) : undefined;
        if (a.status === 'verified') await archiver.deleteRows(lease, a, copy);
      } else if (!(await tableExists(o.pool, a.source))) {
        await markComplete(o.pool, a.id);
      }
      // Archives of a detached partition are finished with their partition below.
    }

    const anonymize = o.anonymize;
    if (anonymize) {
      const cutoff = new Date(o.now.getTime() - anonymize.afterDays * DAY_MS);
      const n = await inSpan('retention.anonymize', {}, () =>
        anonymizeRows(o.pool, lease, { ...anonymize, cutoff, batchRows: o.batchRows, logger: o.logger }),
      );
      o.metrics.retentionRowsAnonymized.inc(n);
    }

    const holds = await activeHolds(o.pool);
    await inSpan('retention.detach', {}, () => detachExpired(o, lease, holds, step));
    for (const table of await detachedPartitions(o.pool)) {
      lease.check();
      await inSpan('retention.partition', { attributes: { 'tributary.partition': table } }, () =>
        archiveAndDrop(o, lease, archiver, table, step),
      );
    }

    for (const unit of await expiredUnits(o)) {
      lease.check();
      if (holds.has(holdKey(unit.month.label, unit.service))) {
        await step({ step: 'unit.held', month: unit.month.label, service: unit.service });
        continue;
      }
      const a = await createArchive(o.pool, {
        runId: lease.id,
        month: unit.month,
        service: unit.service,
        source: 'events',
        rangeFrom: unit.month.from,
        rangeTo: unit.rangeTo,
      });
      const copy = await inSpan('retention.archive', { attributes: { 'tributary.month': a.month } }, () =>
        archiver.write(lease, a),
      );
      if (copy) await archiver.deleteRows(lease, a, copy);
    }
  } finally {
    parquet.close();
    await rm(o.workDir, { recursive: true, force: true }).catch(() => {});
  }
}

async function tableExists(pool: pg.Pool, name: string): Promise<boolean> {
  const { rowCount } = await pool.query(`SELECT 1 FROM pg_class WHERE relname = $1 AND relkind = 'r'`, [
    name,
  ]);
  return (rowCount ?? 0) > 0;
}

/** Monthly partitions attached to `events`, by name. */
async function attachedPartitions(pool: pg.Pool): Promise<{ table: string; month: Month }[]> {
  const { rows } = await pool.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_inherits i
       JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
      WHERE p.relname = 'events'`,
  );
  return rows.flatMap((r) => {
    const month = monthOfPartition(r.name);
    return month ? [{ table: r.name, month }] : [];
  });
}

/** Tables named like a monthly partition that are not attached: detached by a pass, not yet dropped. */
async function detachedPartitions(pool: pg.Pool): Promise<string[]> {
  const { rows } = await pool.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
      WHERE c.relkind = 'r' AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$' AND NOT c.relispartition
      ORDER BY c.relname`,
  );
  return rows.map((r) => r.name);
}

type Step = (s: Record<string, unknown>) => Promise<void>;

async function detachExpired(o: PassOptions, lease: RunLease, holds: Set<string>, step: Step): Promise<void> {
  const horizon = new Date(o.now.getTime() - longestRetentionDays(o.policy) * DAY_MS);
  const held = new Set([...holds].map((k) => k.split('\u0000')[0]));
  for (const { table, month } of await attachedPartitions(o.pool)) {
    if (month.to.getTime() > horizon.getTime()) continue;
    if (held.has(month.label)) {
      await step({ step: 'partition.held', partition: table });
      continue;
    }
    lease.check();
    await inTransaction(o.pool, async (client) => {
      // DETACH briefly locks `events` against inserts; never queue behind a long query for it.
      await client.query(`SET LOCAL lock_timeout = '10s'`);
      await client.query(`ALTER TABLE events DETACH PARTITION ${pg.escapeIdentifier(table)}`);
    });
    await step({ step: 'partition.detached', partition: table });
  }
}

/** Archives every service of a detached partition, then drops it (and completes its archives) atomically. */
async function archiveAndDrop(
  o: PassOptions,
  lease: RunLease,
  archiver: Archiver,
  table: string,
  step: Step,
) {
  const month = monthOfPartition(table) as Month;
  const ident = pg.escapeIdentifier(table);
  const { rows: services } = await o.pool.query<{ service: string }>(
    `SELECT DISTINCT service FROM ${ident} ORDER BY service`,
  );
  const existing = (await unfinishedArchives(o.pool)).filter((a) => a.source === table);
  for (const { service } of services) {
    lease.check();
    const mine = existing.filter((e) => e.service === service);
    if (mine.some((e) => e.status === 'verified')) continue;
    // An interrupted attempt is written again under its own key, so it leaves no stray object.
    const a =
      mine[0] ??
      (await createArchive(o.pool, {
        runId: lease.id,
        month,
        service,
        source: table,
        rangeFrom: month.from,
        rangeTo: month.to,
      }));
    await archiver.write(lease, a);
    await archiver.cleanup(a);
  }
  lease.check();
  await inTransaction(o.pool, async (client) => {
    await client.query(`DROP TABLE ${ident}`);
    await client.query(
      `UPDATE archives SET status = 'complete', completed_at = now() WHERE source = $1 AND status = 'verified'`,
      [table],
    );
    await client.query(
      `UPDATE retention_runs SET partitions_dropped = array_append(partitions_dropped, $2) WHERE id = $1`,
      [lease.id, table],
    );
  });
  o.metrics.retentionPartitionsDropped.inc();
  await step({ step: 'partition.dropped', partition: table, services: services.length });
}

/** (month, service) units with rows past their retention in attached partitions or events_default. */
async function expiredUnits(o: PassOptions): Promise<Unit[]> {
  const horizon = new Date(o.now.getTime() - shortestRetentionDays(o.policy) * DAY_MS);
  const units = new Map<string, Unit>();
  const add = (month: Month, service: string) => {
    const cutoff = retentionCutoff(o.policy, service, o.now);
    if (month.from.getTime() >= cutoff.getTime()) return;
    const rangeTo = new Date(Math.min(month.to.getTime(), cutoff.getTime()));
    units.set(holdKey(month.label, service), { month, service, rangeTo });
  };
  for (const { table, month } of await attachedPartitions(o.pool)) {
    if (month.from.getTime() >= horizon.getTime()) continue;
    const ident = pg.escapeIdentifier(table);
    // Distinct services by walking the (service, occurred_at) index: one probe per service.
    const { rows } = await o.pool.query<{ service: string }>(
      `WITH RECURSIVE s AS (
         (SELECT service FROM ${ident} ORDER BY service LIMIT 1)
         UNION ALL
         SELECT (SELECT service FROM ${ident} WHERE service > s.service ORDER BY service LIMIT 1)
           FROM s WHERE s.service IS NOT NULL)
       SELECT service FROM s WHERE service IS NOT NULL`,
    );
    for (const { service } of rows) {
      const cutoff = retentionCutoff(o.policy, service, o.now);
      const any = await o.pool.query(
        `SELECT 1 FROM ${ident} WHERE service = $1 AND occurred_at < $2 LIMIT 1`,
        [service, cutoff],
      );
      if (any.rowCount) add(month, service);
    }
  }
  const { rows: strays } = await o.pool.query<{ service: string; first: Date }>(
    `SELECT service, min(occurred_at) AS first FROM events_default WHERE occurred_at < $1
      GROUP BY service, date_trunc('month', occurred_at AT TIME ZONE 'UTC')`,
    [horizon],
  );
  for (const s of strays) add(monthOf(s.first), s.service);
  return [...units.values()].sort(
    (a, b) => a.month.from.getTime() - b.month.from.getTime() || a.service.localeCompare(b.service),
  );
}
