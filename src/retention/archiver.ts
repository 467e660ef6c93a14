import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import { buildManifest, putManifest } from '../archive/manifest.ts';
import type { ObjectStore } from '../archive/object-store.ts';
import type { ParquetFiles } from '../archive/parquet.ts';
import {
  type ArchiveRecord,
  deleteArchiveRecord,
  markComplete,
  markVerified,
} from '../store/archives.repo.ts';
import { deleteArchivedEvents } from '../store/events.repo.ts';
import { copyEventsToCsv } from '../store/events-copy.repo.ts';
import { dropMaterializedRangeNow } from '../store/mat-erase.repo.ts';
import type { RunLease } from '../store/run-leases.repo.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { inSpan } from '../telemetry/tracing.ts';

/** The object read back does not match what was written; nothing was deleted. */
export class ArchiveVerifyError extends Error {
  override readonly name = 'ArchiveVerifyError';
}

export interface ArchiverOptions {
  pool: pg.Pool;
  /** For the COPY stream, on a connection of its own without timeouts. */
  databaseUrl: string;
  store: ObjectStore;
  parquet: ParquetFiles;
  workDir: string;
  batchRows: number;
  logger: Logger;
  metrics: Metrics;
}

/**
 * One archive's life: rows → Parquet → object storage → read back and checked → manifest
 * → rows deleted. Each transition is recorded in `archives` before the next begins, so a
 * pass killed anywhere resumes from the recorded state: an unverified object is written
 * again to the same key (nothing was deleted yet), a verified one has its rows deleted by
 * primary key as read from the object itself (only rows that are in the archive are ever
 * deleted; rows that arrived later stay for the next pass).
 */
export class Archiver {
  readonly #o: ArchiverOptions;

  constructor(opts: ArchiverOptions) {
    this.#o = opts;
  }

  #log(lease: RunLease, a: ArchiveRecord, step: string, extra: Record<string, unknown> = {}): Promise<void> {
    const detail = { step, archiveId: a.id, month: a.month, service: a.service, source: a.source, ...extra };
    this.#o.logger.info({ runId: lease.id, ...detail }, 'retention step');
    return lease.step(detail);
  }

  /**
   * Writes and verifies the archive (status `writing` → `verified`). Returns the local copy
   * that was read back (for the delete step), or undefined when there were no rows (the
   * archive record is then removed).
   */
  async write(lease: RunLease, a: ArchiveRecord): Promise<string | undefined> {
    const { store, parquet } = this.#o;
    const dir = join(this.#o.workDir, a.id);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const csv = join(dir, 'rows.csv');
    const file = join(dir, 'part.parquet');
    const copy = join(dir, 'readback.parquet');
    // A manifest marks a finished archive: drop any from an interrupted attempt first.
    await store.delete(a.manifestKey);

    await inSpan('retention.export', { attributes: { 'tributary.archive': a.id } }, () =>
      this.#export(a, csv),
    );
    await parquet.csvToParquet(csv, file);
    await rm(csv, { force: true });
    const stats = await parquet.stats(file);
    if (stats.rows === 0) {
      await rm(dir, { recursive: true, force: true });
      await store.delete(a.objectKey); // an interrupted earlier attempt may have left one

      await deleteArchiveRecord(this.#o.pool, a.id);
      await this.#log(lease, a, 'archive.empty');
      return undefined;
    }
    await this.#log(lease, a, 'archive.written', { rows: stats.rows });

    const put = await inSpan('retention.upload', { attributes: { 'tributary.archive': a.id } }, () =>
      store.putFile(a.objectKey, file, 'application/vnd.apache.parquet'),
    );
    await this.#log(lease, a, 'archive.uploaded', { key: a.objectKey, bytes: put.size });

    const back = await inSpan('retention.verify', { attributes: { 'tributary.archive': a.id } }, async () => {
      const got = await store.getFile(a.objectKey, copy);
      const readStats = await parquet.stats(copy);
      if (got.sha256 !== put.sha256 || got.size !== put.size || readStats.rows !== stats.rows) {
        throw new ArchiveVerifyError(
          `archive ${a.objectKey} read back as ${got.size} bytes, sha256 ${got.sha256}, ${readStats.rows} rows; ` +
            `wrote ${put.size} bytes, sha256 ${put.sha256}, ${stats.rows} rows`,
        );
      }
      return got;
    });
    await rm(file, { force: true });

    await putManifest(store, buildManifest(a, stats, back));
    await markVerified(this.#o.pool, a.id, { ...stats, bytes: back.size, sha256: back.sha256 });
    await lease.add('rows_archived', stats.rows);
    await lease.add('bytes_archived', back.size);
    this.#o.metrics.retentionRowsArchived.inc(stats.rows);
    this.#o.metrics.retentionBytesArchived.inc(back.size);
    await this.#log(lease, a, 'archive.verified', {
      rows: stats.rows,
      bytes: back.size,
      sha256: back.sha256,
    });
    a.status = 'verified';
    return copy;
  }

  /** Streams the unit's rows out of PostgreSQL as CSV, oldest first. */
  #export(a: ArchiveRecord, csv: string): Promise<void> {
    const scope = { source: a.source, service: a.service, from: a.rangeFrom, to: a.rangeTo };
    return copyEventsToCsv(this.#o.databaseUrl, scope, csv);
  }

  /**
   * Deletes the archived rows from `events` by primary key, batch by batch, reading the
   * keys from the verified object (`copy`, downloaded again when absent), then marks the
   * archive complete.
   */
  async deleteRows(lease: RunLease, a: ArchiveRecord, copy?: string): Promise<number> {
    const dir = join(this.#o.workDir, a.id);
    let local = copy;
    if (!local) {
      await mkdir(dir, { recursive: true });
      local = join(dir, 'readback.parquet');
      const got = await this.#o.store.getFile(a.objectKey, local);
      if (a.sha256 && got.sha256 !== a.sha256) {
        throw new ArchiveVerifyError(
          `archive ${a.objectKey} changed since it was verified (sha256 ${got.sha256})`,
        );
      }
    }
    let deleted = 0;
    await inSpan('retention.delete', { attributes: { 'tributary.archive': a.id } }, async () => {
      for await (const keys of this.#o.parquet.keys(local, this.#o.batchRows)) {
        lease.check();
        const n = await deleteArchivedEvents(this.#o.pool, keys, {
          service: a.service,
          from: a.rangeFrom,
          to: a.rangeTo,
        });
        deleted += n;
        await lease.add('rows_deleted', n);
        this.#o.metrics.retentionRowsDeleted.inc(n);
        await this.#log(lease, a, 'rows.deleted', { rows: n });
      }
    });
    // The materialisations' rows of the same events go with them.
    const materialized = await dropMaterializedRangeNow(this.#o.pool, {
      service: a.service,
      from: a.rangeFrom,
      to: a.rangeTo,
    });
    await markComplete(this.#o.pool, a.id);
    await this.#log(lease, a, 'archive.complete', { deleted, materialized });
    await rm(dir, { recursive: true, force: true });
    a.status = 'complete';
    return deleted;
  }

  async cleanup(a: ArchiveRecord): Promise<void> {
    await rm(join(this.#o.workDir, a.id), { recursive: true, force: true });
  }
}
