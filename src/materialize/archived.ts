import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import { getManifest, matchesManifest } from '../archive/manifest.ts';
import type { ObjectStore } from '../archive/object-store.ts';
import { ParquetFiles } from '../archive/parquet.ts';
import {
  addArchivedRows,
  archivesToRead,
  copyArchivedCsv,
  createArchivedRows,
} from '../store/mat-archived.repo.ts';

/**
 * A rebuild that reaches past retention (ARCHITECTURE §7, §17, `POST …/rebuild
 * {"archivedFrom"}`): the archived months are read back with DuckDB into the rebuild's own
 * transaction, so its tables hold them as if they were still in `events`. Rows erased since
 * they were archived are not read (erasure rewrites the archive before it reaches the
 * materialisations, and waits for a rebuild under way); anonymised rows come back as the
 * archive holds them.
 */

/** Where the archive is, and where its objects are downloaded and converted. */
export interface ArchiveAccess {
  store: ObjectStore;
  /** ARCHIVE_WORK_DIR: the rebuild works in a directory of its own under it. */
  workDir: string;
}

/** An object that is not the one its manifest describes: the rebuild fails, and is retried. */
export class ArchivedReadError extends Error {
  override readonly name = 'ArchivedReadError';
}

/**
 * Adds to the rebuild's `mat_batch` (loaded from `events` already) the rows of every archive
 * of `services` whose rows left PostgreSQL, from month `from` (`YYYY-MM`) on: each object
 * downloaded, checked against its manifest (size, SHA-256, then its row count), converted to
 * CSV and COPYed on the rebuild's client. Returns the rows added (those `events` did not hold).
 */
export async function loadArchivedEvents(
  client: pg.PoolClient,
  archive: ArchiveAccess | undefined,
  o: { name: string; from: string; services: readonly string[] | null; logger: Logger },
): Promise<number> {
  if (!archive) throw new Error('archived months asked for, but this process has no archive store');
  const archives = await archivesToRead(client, o.from, o.services);
  if (archives.length === 0) {
    o.logger.info(
      { materialization: o.name, archivedFrom: o.from },
      'materialisation: no archived months to read',
    );
    return 0;
  }
  // Only the holder of the materialisation's row lock uses it: left over from a killed process, if anything.
  const dir = join(archive.workDir, `materialize-${o.name}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const parquet = await ParquetFiles.open(dir, '256MB');
  let read = 0;
  try {
    await createArchivedRows(client);
    for (const a of archives) {
      const file = join(dir, `${a.id}.parquet`);
      const csv = join(dir, `${a.id}.csv`);
      const manifest = await getManifest(archive.store, a.manifestKey);
      const got = await archive.store.getFile(a.objectKey, file);
      if (!matchesManifest(manifest, got)) {
        throw new ArchivedReadError(
          `${a.objectKey}: ${got.size} bytes, sha256 ${got.sha256}; its manifest says ${manifest.bytes} bytes, sha256 ${manifest.sha256}`,
        );
      }
      await parquet.parquetToCsv(file, csv);
      await rm(file, { force: true });
      const rows = await copyArchivedCsv(client, csv);
      await rm(csv, { force: true });
      if (rows !== manifest.rows) {
        throw new ArchivedReadError(`${a.objectKey}: ${rows} rows read; its manifest says ${manifest.rows}`);
      }
      read += rows;
    }
  } finally {
    parquet.close();
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
  const added = await addArchivedRows(client, o.services);
  o.logger.info(
    { materialization: o.name, archivedFrom: o.from, objects: archives.length, rows: read, added },
    'materialisation: archived months read',
  );
  return added;
}
