import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import { type ArchiveManifest, getManifest, matchesManifest } from '../archive/manifest.ts';
import type { ObjectStore } from '../archive/object-store.ts';
import { ParquetFiles } from '../archive/parquet.ts';
import { adoptArchive } from '../store/archives.repo.ts';
import { loadEventsFromCsv } from '../store/events-copy.repo.ts';
import { ensurePartitions } from '../store/partitions.ts';
import { archivePrefix, type Month, monthRange } from './policy.ts';

export interface RestoreOptions {
  pool: pg.Pool;
  /** For the COPY stream, on a connection of its own without timeouts. */
  databaseUrl: string;
  store: ObjectStore;
  logger: Logger;
  workDir: string;
  from: Month;
  to: Month;
  service?: string;
  /** Restored rows stay this long before a retention pass removes them again. */
  holdDays: number;
}

export interface RestoreResult {
  objects: number;
  /** Rows in the archives read. */
  rows: number;
  /** Rows that were not in PostgreSQL already. */
  inserted: number;
}

/** Thrown when an object no longer matches its manifest: nothing of it was loaded. */
export class RestoreVerifyError extends Error {
  override readonly name = 'RestoreVerifyError';
}

/**
 * Loads archived rows back into their monthly partitions. The archive is found from the
 * manifests in object storage (so it works on a new database too), each object checked
 * against its manifest's SHA-256 before a row of it is loaded. Rows already present are
 * left alone (ON CONFLICT DO NOTHING), so a restore can be repeated. Each archive is
 * marked `restored` with a hold: the retention pass leaves its month and service alone
 * until the hold ends and then deletes exactly these rows again (they are archived
 * already, so nothing is archived twice).
 */
export async function restoreArchives(o: RestoreOptions): Promise<RestoreResult> {
  const parquet = await ParquetFiles.open(o.workDir);
  const result: RestoreResult = { objects: 0, rows: 0, inserted: 0 };
  try {
    for (const month of monthRange(o.from, o.to)) {
      const keys = await o.store.list(archivePrefix(month, o.service));
      for (const key of keys.filter((k) => k.endsWith('.manifest.json'))) {
        const manifest = await getManifest(o.store, key);
        if (o.service !== undefined && manifest.service !== o.service) continue;
        const inserted = await restoreOne(o, parquet, month, manifest);
        result.objects += 1;
        result.rows += manifest.rows;
        result.inserted += inserted;
        o.logger.info(
          { object: manifest.objectKey, rows: manifest.rows, inserted, month: month.label },
          'archive restored',
        );
      }
    }
  } finally {
    parquet.close();
    await rm(o.workDir, { recursive: true, force: true }).catch(() => {});
  }
  return result;
}

async function restoreOne(o: RestoreOptions, parquet: ParquetFiles, month: Month, m: ArchiveManifest) {
  const dir = join(o.workDir, m.archiveId);
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'part.parquet');
  const csv = join(dir, 'rows.csv');
  try {
    const got = await o.store.getFile(m.objectKey, file);
    if (!matchesManifest(m, got)) {
      throw new RestoreVerifyError(
        `${m.objectKey}: ${got.size} bytes, sha256 ${got.sha256}; its manifest says ${m.bytes} bytes, sha256 ${m.sha256}`,
      );
    }
    await parquet.parquetToCsv(file, csv);
    await ensurePartitions(o.pool, [
      {
        name: month.partition,
        from: month.from.toISOString().slice(0, 10),
        to: month.to.toISOString().slice(0, 10),
      },
    ]);
    return await loadEventsFromCsv(o.databaseUrl, csv, (client) => {
      const holdUntil = new Date(Date.now() + o.holdDays * 86_400_000);
      return adoptArchive(client, m, 'restored', holdUntil);
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
