import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import { type ArchiveManifest, getManifest, putManifest, withContents } from '../archive/manifest.ts';
import type { ObjectStore } from '../archive/object-store.ts';
import { ParquetFiles, type ParquetStats } from '../archive/parquet.ts';
import {
  archivesToErase,
  type ErasableArchive,
  recordArchiveContents,
  recordArchiveEmptied,
} from '../store/archives.repo.ts';
import { recordArchiveErased } from '../store/dsar.repo.ts';

export interface ArchiveErasureOptions {
  pool: pg.Pool;
  store: ObjectStore;
  requestId: string;
  subjectIds: string[];
  workDir: string;
  logger: Logger;
}

/**
 * Removes a subject's rows from every archive object. An object holding some is rewritten
 * without them: the new file is uploaded beside the archive (under `tmp/`, outside
 * `events/`, so no reader sees two copies), read back and checked, and only then copied
 * over the original key (an atomic replace), checked again, and its manifest and
 * `archives` row updated. Objects already done are recorded in the request's progress,
 * and an object found without the subject's rows is just brought in line, so a job killed
 * anywhere can run again. The caller holds the retention lease.
 */
export async function eraseFromArchives(
  o: ArchiveErasureOptions,
): Promise<{ rows: number; objects: number }> {
  const archives = await archivesToErase(o.pool, o.requestId);
  const parquet = await ParquetFiles.open(o.workDir, '256MB');
  let removed = 0;
  let rewritten = 0;
  try {
    for (const a of archives) {
      const dir = join(o.workDir, a.id);
      await mkdir(dir, { recursive: true });
      const original = join(dir, 'original.parquet');
      const got = await o.store.getFile(a.objectKey, original);
      const present = await parquet.countSubject(original, o.subjectIds);
      let found = present;
      if (present === 0 && a.sha256 && got.sha256 !== a.sha256) {
        // Replaced by an earlier attempt that died before recording it: record it now,
        // counting the rows it removed.
        found = await recordRewrite(o, a, original, got, parquet);
      }
      if (present > 0) {
        await rewriteWithout(o, a, dir, parquet);
        removed += found;
        rewritten += 1;
        o.logger.info(
          { requestId: o.requestId, object: a.objectKey, removed: found },
          'archive object rewritten',
        );
      }
      await recordArchiveErased(o.pool, o.requestId, a.id, found);
      await rm(dir, { recursive: true, force: true });
    }
  } finally {
    parquet.close();
    await rm(o.workDir, { recursive: true, force: true }).catch(() => {});
  }
  return { rows: removed, objects: rewritten };
}

/**
 * Replaces the object (downloaded to `dir/original.parquet`) with a copy without the
 * subject's rows, staged and checked first; an object left with no rows is deleted with
 * its manifest.
 */
async function rewriteWithout(
  o: ArchiveErasureOptions,
  a: ErasableArchive,
  dir: string,
  parquet: ParquetFiles,
): Promise<void> {
  const { store } = o;
  const cleaned = join(dir, 'cleaned.parquet');
  await parquet.withoutSubject(join(dir, 'original.parquet'), cleaned, o.subjectIds);
  const stats = await parquet.stats(cleaned);
  const manifest = await getManifest(store, a.manifestKey);
  if (stats.rows === 0) {
    // Nothing else in it: the object and its manifest go.
    await store.delete(a.manifestKey);
    await store.delete(a.objectKey);
    await recordArchiveEmptied(o.pool, a.id);
    return;
  }
  const staging = `tmp/erasure/${o.requestId}/${a.id}.parquet`;
  const staged = await store.putFile(staging, cleaned, 'application/vnd.apache.parquet');
  const check = await store.getFile(staging, join(dir, 'check.parquet'));
  if (check.sha256 !== staged.sha256)
    throw new Error(`staged copy of ${a.objectKey} did not read back intact`);
  const put = await store.putFile(a.objectKey, cleaned, 'application/vnd.apache.parquet');
  const back = await store.getFile(a.objectKey, join(dir, 'final.parquet'));
  if (back.sha256 !== put.sha256 || (await parquet.stats(join(dir, 'final.parquet'))).rows !== stats.rows) {
    throw new Error(`rewritten ${a.objectKey} did not read back intact`);
  }
  await writeRecord(o, a, manifest, stats, put);
  await store.delete(staging);
}

/** Manifest and `archives` row brought in line with the object now stored. */
async function writeRecord(
  o: ArchiveErasureOptions,
  a: ErasableArchive,
  manifest: ArchiveManifest,
  stats: ParquetStats,
  put: { size: number; sha256: string },
): Promise<void> {
  await putManifest(o.store, withContents(manifest, stats, put), a.manifestKey);
  await recordArchiveContents(o.pool, a.id, { ...stats, bytes: put.size, sha256: put.sha256 });
}

/** Returns how many rows the earlier attempt removed (the recorded count minus the object's). */
async function recordRewrite(
  o: ArchiveErasureOptions,
  a: ErasableArchive,
  file: string,
  got: { size: number; sha256: string },
  parquet: ParquetFiles,
): Promise<number> {
  const manifest = await getManifest(o.store, a.manifestKey);
  const stats = await parquet.stats(file);
  await writeRecord(o, a, manifest, stats, got);
  return Math.max(0, (a.rowCount ?? stats.rows) - stats.rows);
}
