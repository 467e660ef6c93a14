import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { ObjectStore } from '../archive/object-store.ts';
import { ARCHIVE_SCHEMA_VERSION, ParquetFiles } from '../archive/parquet.ts';
import {
  type ArchiveRecord,
  activeHolds,
  completeArchivesOf,
  createArchive,
  holdKey,
  markComplete,
  releaseExpiredHolds,
  unfinishedArchives,
} from '../store/archives.repo.ts';
import { inTransaction } from '../store/db.ts';
import { dropMaterializedRange, dropMaterializedRangeNow } from '../store/mat-erase.repo.ts';
import { requestRebuildAll } from '../store/materializations.repo.ts';
import {
  attachedPartitionNames,
  defaultPartitionMonths,
  detachedPartitionNames,
  detachPartition,
  dropDetachedPartition,
  hasRowsBefore,
  servicesInPartition,
  servicesInTable,
  tableExists,
} from '../store/partitions.ts';
import { recordPartitionDropped } from '../store/retention-runs.repo.ts';
import type { RunLease } from '../store/run-leases.repo.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { inSpan } from '../telemetry/tracing.ts';
import { anonymizeRows } from './anonymize.ts';
import { Archiver } from './archiver.ts';
import {
  archiveKeys,
  longestRetentionDays,
  type Month,
  monthOf,
  monthOfPartition,
  type RetentionPolicy,
  retentionCutoff,
  shortestRetentionDays,
} from './policy.ts';

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
      if (n > 0) {
        // Materialised rows hold the ids as they were: gone now, and every materialisation
        // rebuilt from the anonymised events (users and links included).
        await dropMaterializedRangeNow(o.pool, { from: new Date(0), to: cutoff });
        await requestRebuildAll(o.pool);
      }
    }

    const holds = await activeHolds(o.pool);
    await inSpan('retention.detach', {}, () => detachExpired(o, lease, holds, step));
    for (const table of await detachedPartitionNames(o.pool)) {
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
      const a = await newArchive(o.pool, {
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

/** Monthly partitions attached to `events`, by name. */
async function attachedPartitions(pool: pg.Pool): Promise<{ table: string; month: Month }[]> {
  return (await attachedPartitionNames(pool)).flatMap((table) => {
    const month = monthOfPartition(table);
    return month ? [{ table, month }] : [];
  });
}

/**
 * Records a new archive of one month of one service, in state `writing`. Its id, stamp and
 * keys are chosen here, in the process (one query fewer than asking the database).
 */
function newArchive(
  pool: pg.Pool,
  a: { runId: string; month: Month; service: string; source: string; rangeFrom: Date; rangeTo: Date },
): Promise<ArchiveRecord> {
  const id = randomUUID();
  const createdAt = new Date();
  return createArchive(pool, {
    ...a,
    id,
    month: a.month.label,
    ...archiveKeys(a.month, a.service, createdAt, id),
    schemaVersion: ARCHIVE_SCHEMA_VERSION,
    createdAt,
  });
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
    await detachPartition(o.pool, table);
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
  const services = await servicesInTable(o.pool, table);
  const existing = (await unfinishedArchives(o.pool)).filter((a) => a.source === table);
  for (const service of services) {
    lease.check();
    const mine = existing.filter((e) => e.service === service);
    if (mine.some((e) => e.status === 'verified')) continue;
    // An interrupted attempt is written again under its own key, so it leaves no stray object.
    const a =
      mine[0] ??
      (await newArchive(o.pool, {
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
    await dropDetachedPartition(client, table);
    await dropMaterializedRange(client, { from: month.from, to: month.to });
    await completeArchivesOf(client, table);
    await recordPartitionDropped(client, lease.id, table);
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
    for (const service of await servicesInPartition(o.pool, table)) {
      if (await hasRowsBefore(o.pool, table, service, retentionCutoff(o.policy, service, o.now))) {
        add(month, service);
      }
    }
  }
  const strays = await defaultPartitionMonths(o.pool, horizon);
  for (const s of strays) add(monthOf(s.first), s.service);
  return [...units.values()].sort(
    (a, b) => a.month.from.getTime() - b.month.from.getTime() || a.service.localeCompare(b.service),
  );
}
