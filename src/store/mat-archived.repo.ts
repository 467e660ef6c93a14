import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { addRebuildRows } from './mat-batch.repo.ts';

/**
 * Archived months in a materialisation's rebuild (ARCHITECTURE §7, §17), on the rebuild's own
 * client and in its REPEATABLE READ transaction: the archives to read, found in the same
 * snapshot as the rebuild's read of `events`; their rows, read back as CSV (archive/parquet.ts),
 * COPYed into a temporary table; then added to `mat_batch` once each, but for those `events`
 * holds as well.
 */

/** An archive object a rebuild reads. */
export interface ArchivedObject {
  id: string;
  month: string;
  service: string;
  objectKey: string;
  manifestKey: string;
}

/**
 * The archives whose rows left PostgreSQL (`complete`: verified, then deleted or their
 * partition dropped; erasure rewrites these), with rows, of months from `from` (`YYYY-MM`)
 * and of `services` (null: every one), oldest first. Read in the rebuild's snapshot, so every
 * row its read of `events` misses is in one of them: an archive is complete before its rows
 * are gone.
 */
export async function archivesToRead(
  client: pg.PoolClient,
  from: string,
  services: readonly string[] | null,
): Promise<ArchivedObject[]> {
  const r = await client.query<ArchivedObject>(
    `SELECT id, month, service, object_key AS "objectKey", manifest_key AS "manifestKey" FROM archives
      WHERE status = 'complete' AND row_count > 0 AND month >= $1
        AND ($2::text[] IS NULL OR service = ANY($2::text[]))
      ORDER BY month, service, created_at, id`,
    [from, services],
  );
  return r.rows;
}

/** The archive's columns (archive/parquet.ts ARCHIVE_COLUMNS), in its CSV's order. */
const ARCHIVED_COLUMNS = `id uuid, occurred_at timestamptz, received_at timestamptz, service text, type text,
  user_id text, message text, metadata jsonb, anonymized boolean, key_id text, anonymous_id text, violations jsonb`;

/** The temporary table the archived rows are COPYed into, dropped at commit (or by {@link addArchivedRows}). */
export async function createArchivedRows(client: pg.PoolClient): Promise<void> {
  await client.query(`CREATE TEMP TABLE mat_archived (${ARCHIVED_COLUMNS}) ON COMMIT DROP`);
}

/** COPYs a CSV file of archived rows into `mat_archived`, on this client. Returns the rows copied. */
export async function copyArchivedCsv(client: pg.PoolClient, csvPath: string): Promise<number> {
  const copy = client.query(copyFrom('COPY mat_archived FROM STDIN WITH (FORMAT csv)'));
  await pipeline(createReadStream(csvPath), copy);
  return copy.rowCount;
}

/**
 * Adds the rows of `mat_archived` to the rebuild's `mat_batch`, each (occurred_at, id, service)
 * once, but for those `events` holds too (restored, or sent again after they were archived):
 * the rebuild read those from `events` already, as they are there now. Drops `mat_archived`.
 * Returns the rows added.
 */
export async function addArchivedRows(
  client: pg.PoolClient,
  services: readonly string[] | null,
): Promise<number> {
  await client.query('ANALYZE mat_archived');
  const added = await addRebuildRows(
    client,
    `(SELECT DISTINCT ON (a.occurred_at, a.id, a.service) a.* FROM mat_archived a
       WHERE ($1::text[] IS NULL OR a.service = ANY($1::text[]))
         AND NOT EXISTS (SELECT 1 FROM events x
                          WHERE x.occurred_at = a.occurred_at AND x.id = a.id AND x.service = a.service)
       ORDER BY a.occurred_at, a.id, a.service) e`,
    [services],
  );
  await client.query('DROP TABLE mat_archived');
  return added;
}
