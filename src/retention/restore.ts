import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Logger } from 'pino';
import type { ObjectStore } from '../archive/object-store.ts';
import { beginUntimed, connectForCopy } from '../store/db.ts';
import { ensurePartitions } from '../store/partitions.ts';
import { type ArchiveManifest, adoptArchive } from './archives.repo.ts';
import { ParquetFiles } from './parquet.ts';
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
        const manifest = JSON.parse(
          Buffer.from(await o.store.getBytes(key)).toString('utf8'),
        ) as ArchiveManifest;
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
    if (got.sha256 !== m.sha256 || got.size !== m.bytes) {
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
    const client = await connectForCopy(o.databaseUrl, 'tributary-restore');
    try {
      await beginUntimed(client);
      await client.query(
        `CREATE TEMP TABLE restore_rows (id uuid, occurred_at timestamptz, received_at timestamptz, service text,
           type text, user_id text, message text, metadata jsonb, anonymized boolean) ON COMMIT DROP`,
      );
      await pipeline(
        createReadStream(csv),
        client.query(copyFrom('COPY restore_rows FROM STDIN WITH (FORMAT csv)')),
      );
      const res = await client.query(
        `INSERT INTO events (id, occurred_at, received_at, service, type, user_id, message, metadata, anonymized)
         SELECT id, occurred_at, received_at, service, type, user_id, message, metadata, anonymized FROM restore_rows
         ON CONFLICT DO NOTHING`,
      );
      const holdUntil = new Date(Date.now() + o.holdDays * 86_400_000);
      await adoptArchive(client, m, 'restored', holdUntil);
      await client.query('COMMIT');
      return res.rowCount ?? 0;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      await client.end().catch(() => {});
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
