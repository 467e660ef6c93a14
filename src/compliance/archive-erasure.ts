import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { ObjectStore } from '../archive/object-store.ts';
import type { ArchiveManifest } from '../retention/archives.repo.ts';
import { ParquetFiles } from '../retention/parquet.ts';

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
  const { pool, store } = o;
  const { rows: archives } = await pool.query<{
    id: string;
    object_key: string;
    manifest_key: string;
    sha256: string | null;
    row_count: number | null;
  }>(
    `SELECT a.id, a.object_key, a.manifest_key, a.sha256, a.row_count::float8 AS row_count FROM archives a, dsar_requests d
      WHERE d.id = $1 AND a.status IN ('complete', 'restored')
        AND NOT coalesce(d.progress->'archivesDone' ? a.id::text, false)
      ORDER BY a.created_at`,
    [o.requestId],
  );
  const parquet = await ParquetFiles.open(o.workDir, '256MB');
  let removed = 0;
  let rewritten = 0;
  try {
    for (const a of archives) {
      const dir = join(o.workDir, a.id);
      await mkdir(dir, { recursive: true });
      const original = join(dir, 'original.parquet');
      const cleaned = join(dir, 'cleaned.parquet');
      const got = await store.getFile(a.object_key, original);
      const present = await parquet.countSubject(original, o.subjectIds);
      let found = present;
      if (present === 0 && a.sha256 && got.sha256 !== a.sha256) {
        // Replaced by an earlier attempt that died before recording it: record it now,
        // counting the rows it removed.
        found = await recordRewrite(o, a, original, got, parquet);
      }
      if (present > 0) {
        await parquet.withoutSubject(original, cleaned, o.subjectIds);
        const stats = await parquet.stats(cleaned);
        const manifest = JSON.parse(
          Buffer.from(await store.getBytes(a.manifest_key)).toString('utf8'),
        ) as ArchiveManifest;
        if (stats.rows === 0) {
          // Nothing else in it: the object and its manifest go.
          await store.delete(a.manifest_key);
          await store.delete(a.object_key);
          await pool.query(
            `UPDATE archives SET row_count = 0, bytes = 0, sha256 = NULL, min_occurred_at = NULL, max_occurred_at = NULL
              WHERE id = $1`,
            [a.id],
          );
        } else {
          const staging = `tmp/erasure/${o.requestId}/${a.id}.parquet`;
          const staged = await store.putFile(staging, cleaned, 'application/vnd.apache.parquet');
          const check = await store.getFile(staging, join(dir, 'check.parquet'));
          if (check.sha256 !== staged.sha256)
            throw new Error(`staged copy of ${a.object_key} did not read back intact`);
          const put = await store.putFile(a.object_key, cleaned, 'application/vnd.apache.parquet');
          const back = await store.getFile(a.object_key, join(dir, 'final.parquet'));
          if (
            back.sha256 !== put.sha256 ||
            (await parquet.stats(join(dir, 'final.parquet'))).rows !== stats.rows
          ) {
            throw new Error(`rewritten ${a.object_key} did not read back intact`);
          }
          await writeRecord(o, a, manifest, stats, put);
          await store.delete(staging);
        }
        removed += found;
        rewritten += 1;
        o.logger.info(
          { requestId: o.requestId, object: a.object_key, removed: found },
          'archive object rewritten',
        );
      }
      await pool.query(
        `UPDATE dsar_requests
            SET progress = jsonb_set(progress, '{archivesDone}', coalesce(progress->'archivesDone', '[]'::jsonb) || to_jsonb($2::text)),
                deleted_archive = deleted_archive + $3, archives_rewritten = archives_rewritten + $4
          WHERE id = $1`,
        [o.requestId, a.id, found, found > 0 ? 1 : 0],
      );
      await rm(dir, { recursive: true, force: true });
    }
  } finally {
    parquet.close();
    await rm(o.workDir, { recursive: true, force: true }).catch(() => {});
  }
  return { rows: removed, objects: rewritten };
}

type ArchiveRef = { id: string; manifest_key: string };
type Stats = Awaited<ReturnType<ParquetFiles['stats']>>;

/** Manifest and `archives` row brought in line with the object now stored. */
async function writeRecord(
  o: ArchiveErasureOptions,
  a: ArchiveRef,
  manifest: ArchiveManifest,
  stats: Stats,
  put: { size: number; sha256: string },
): Promise<void> {
  const updated: ArchiveManifest = {
    ...manifest,
    rows: stats.rows,
    bytes: put.size,
    sha256: put.sha256,
    ...(stats.minOccurredAt ? { minOccurredAt: stats.minOccurredAt } : {}),
    ...(stats.maxOccurredAt ? { maxOccurredAt: stats.maxOccurredAt } : {}),
  };
  await o.store.putBytes(
    a.manifest_key,
    Buffer.from(`${JSON.stringify(updated, null, 2)}\n`),
    'application/json',
  );
  await o.pool.query(
    `UPDATE archives SET row_count = $2, bytes = $3, sha256 = $4, min_occurred_at = $5, max_occurred_at = $6
      WHERE id = $1`,
    [a.id, stats.rows, put.size, put.sha256, stats.minOccurredAt ?? null, stats.maxOccurredAt ?? null],
  );
}

/** Returns how many rows the earlier attempt removed (the recorded count minus the object's). */
async function recordRewrite(
  o: ArchiveErasureOptions,
  a: ArchiveRef & { row_count: number | null },
  file: string,
  got: { size: number; sha256: string },
  parquet: ParquetFiles,
): Promise<number> {
  const manifest = JSON.parse(
    Buffer.from(await o.store.getBytes(a.manifest_key)).toString('utf8'),
  ) as ArchiveManifest;
  const stats = await parquet.stats(file);
  await writeRecord(o, a, manifest, stats, got);
  return Math.max(0, (a.row_count ?? stats.rows) - stats.rows);
}
