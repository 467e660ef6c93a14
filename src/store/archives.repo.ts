import type pg from 'pg';

/*
 * The `archives` table. Hand-written SQL, moved unchanged from retention/: some statements
 * run inside another step's transaction on a bare pg client (the restore's COPY connection,
 * the partition drop), so they take a pool or a client rather than a drizzle instance, and
 * the row shapes (bigint counts read as float8 numbers, camel-cased aliases) are the ones
 * the admin API has always returned.
 */

export type ArchiveStatus = 'writing' | 'verified' | 'complete' | 'restored';

export interface ArchiveRecord {
  id: string;
  runId: string | null;
  month: string;
  service: string;
  /** `events` (rows past retention in attached partitions) or a detached partition's table. */
  source: string;
  rangeFrom: Date;
  rangeTo: Date;
  objectKey: string;
  manifestKey: string;
  status: ArchiveStatus;
  rowCount: number | null;
  bytes: number | null;
  sha256: string | null;
  minOccurredAt: Date | null;
  maxOccurredAt: Date | null;
  schemaVersion: number;
  createdAt: Date;
  verifiedAt: Date | null;
  completedAt: Date | null;
  restoredAt: Date | null;
  holdUntil: Date | null;
}

/** A pool or a client inside a transaction. */
type Queryable = pg.Pool | pg.ClientBase;

const COLUMNS = `id, run_id AS "runId", month, service, source, range_from AS "rangeFrom", range_to AS "rangeTo",
  object_key AS "objectKey", manifest_key AS "manifestKey", status, row_count::float8 AS "rowCount",
  bytes::float8 AS bytes, sha256, min_occurred_at AS "minOccurredAt", max_occurred_at AS "maxOccurredAt",
  schema_version AS "schemaVersion", created_at AS "createdAt", verified_at AS "verifiedAt",
  completed_at AS "completedAt", restored_at AS "restoredAt", hold_until AS "holdUntil"`;

/** A new archive about to be written: its id, keys and stamp are chosen by the caller. */
export interface NewArchive {
  id: string;
  runId: string;
  /** `YYYY-MM`. */
  month: string;
  service: string;
  source: string;
  rangeFrom: Date;
  rangeTo: Date;
  objectKey: string;
  manifestKey: string;
  schemaVersion: number;
  createdAt: Date;
}

/** Records an archive in state `writing`. */
export async function createArchive(pool: pg.Pool, a: NewArchive): Promise<ArchiveRecord> {
  const { rows } = await pool.query<ArchiveRecord>(
    `INSERT INTO archives (id, run_id, month, service, source, range_from, range_to, object_key, manifest_key,
                           status, schema_version, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'writing', $10, $11) RETURNING ${COLUMNS}`,
    [
      a.id,
      a.runId,
      a.month,
      a.service,
      a.source,
      a.rangeFrom,
      a.rangeTo,
      a.objectKey,
      a.manifestKey,
      a.schemaVersion,
      a.createdAt,
    ],
  );
  return rows[0] as ArchiveRecord;
}

/** Archives a pass has not finished: written but unverified, or verified with rows still to delete. */
export async function unfinishedArchives(pool: pg.Pool): Promise<ArchiveRecord[]> {
  const { rows } = await pool.query<ArchiveRecord>(
    `SELECT ${COLUMNS} FROM archives WHERE status IN ('writing', 'verified') ORDER BY created_at`,
  );
  return rows;
}

/** Restored archives whose hold has ended: their rows go again (they are archived already). */
export async function releaseExpiredHolds(pool: pg.Pool): Promise<number> {
  const res = await pool.query(
    `UPDATE archives SET status = 'verified', source = 'events', hold_until = NULL
      WHERE status = 'restored' AND (hold_until IS NULL OR hold_until <= now())`,
  );
  return res.rowCount ?? 0;
}

/** (month, service) pairs held in PostgreSQL by a restore: not archived again until the hold ends. */
export async function activeHolds(pool: pg.Pool): Promise<Set<string>> {
  const { rows } = await pool.query<{ month: string; service: string }>(
    `SELECT DISTINCT month, service FROM archives WHERE status = 'restored'`,
  );
  return new Set(rows.map((r) => holdKey(r.month, r.service)));
}

/** The key of a (month, service) pair in the set {@link activeHolds} returns. */
export const holdKey = (month: string, service: string) => `${month}\u0000${service}`;

/** The object was read back intact: its size, digest, row count and time range are recorded. */
export async function markVerified(
  pool: pg.Pool,
  id: string,
  v: { rows: number; bytes: number; sha256: string; minOccurredAt?: string; maxOccurredAt?: string },
): Promise<void> {
  await pool.query(
    `UPDATE archives SET status = 'verified', verified_at = now(), row_count = $2, bytes = $3, sha256 = $4,
            min_occurred_at = $5, max_occurred_at = $6
      WHERE id = $1`,
    [id, v.rows, v.bytes, v.sha256, v.minOccurredAt ?? null, v.maxOccurredAt ?? null],
  );
}

/** Its rows are gone from PostgreSQL (deleted, or their partition dropped). */
export async function markComplete(pool: Queryable, id: string): Promise<void> {
  await pool.query(`UPDATE archives SET status = 'complete', completed_at = now() WHERE id = $1`, [id]);
}

/** Completes every verified archive of a detached partition, in the transaction that drops it. */
export async function completeArchivesOf(client: pg.ClientBase, source: string): Promise<void> {
  await client.query(
    `UPDATE archives SET status = 'complete', completed_at = now() WHERE source = $1 AND status = 'verified'`,
    [source],
  );
}

/** Forgets an archive that turned out to have no rows. */
export async function deleteArchiveRecord(pool: pg.Pool, id: string): Promise<void> {
  await pool.query('DELETE FROM archives WHERE id = $1', [id]);
}

export interface ArchiveFilter {
  month?: string;
  service?: string;
  status?: ArchiveStatus;
  limit: number;
  /** Keyset cursor: the `createdAt|id` of the last archive of the previous page. */
  before?: { createdAt: Date; id: string };
}

/** Newest first. */
export async function listArchives(pool: pg.Pool, f: ArchiveFilter): Promise<ArchiveRecord[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    where.push(sql.replace('?', `$${params.length}`));
  };
  if (f.month) add('month = ?', f.month);
  if (f.service) add('service = ?', f.service);
  if (f.status) add('status = ?', f.status);
  if (f.before) {
    params.push(f.before.createdAt, f.before.id);
    where.push(`(created_at, id) < ($${params.length - 1}, $${params.length})`);
  }
  params.push(f.limit);
  const { rows } = await pool.query<ArchiveRecord>(
    `SELECT ${COLUMNS} FROM archives ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY created_at DESC, id DESC LIMIT $${params.length}`,
    params,
  );
  return rows;
}

/** What a manifest says of its archive (an archive/manifest.ts ArchiveManifest fits). */
export interface ArchiveFacts {
  archiveId: string;
  runId: string | null;
  month: string;
  service: string;
  rangeFrom: string;
  rangeTo: string;
  objectKey: string;
  manifestKey: string;
  rows: number;
  bytes: number;
  sha256: string;
  minOccurredAt?: string;
  maxOccurredAt?: string;
  schemaVersion: number;
  createdAt: string;
}

/** Records an archive found in object storage (by its manifest) that this database does not know. */
export async function adoptArchive(
  pool: Queryable,
  m: ArchiveFacts,
  status: ArchiveStatus,
  holdUntil: Date | null,
): Promise<void> {
  await pool.query(
    `INSERT INTO archives (id, run_id, month, service, source, range_from, range_to, object_key, manifest_key,
                           status, row_count, bytes, sha256, min_occurred_at, max_occurred_at, schema_version,
                           created_at, verified_at, completed_at, restored_at, hold_until)
     VALUES ($1, $2, $3, $4, 'events', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $16,
             CASE WHEN $9 = 'restored' THEN now() END, $17)
     ON CONFLICT (object_key) DO UPDATE
       SET status = EXCLUDED.status, restored_at = EXCLUDED.restored_at, hold_until = EXCLUDED.hold_until,
           source = 'events'`,
    [
      m.archiveId,
      m.runId,
      m.month,
      m.service,
      m.rangeFrom,
      m.rangeTo,
      m.objectKey,
      m.manifestKey,
      status,
      m.rows,
      m.bytes,
      m.sha256,
      m.minOccurredAt ?? null,
      m.maxOccurredAt ?? null,
      m.schemaVersion,
      m.createdAt,
      holdUntil,
    ],
  );
}

/** Archives an export reads: complete, with rows, oldest first. */
export async function archivesWithRows(pool: pg.Pool): Promise<{ id: string; objectKey: string }[]> {
  const { rows } = await pool.query<{ id: string; objectKey: string }>(
    `SELECT id, object_key AS "objectKey" FROM archives WHERE status = 'complete' AND row_count > 0
      ORDER BY min_occurred_at, id`,
  );
  return rows;
}

/** An archive an erasure may have to rewrite. */
export interface ErasableArchive {
  id: string;
  objectKey: string;
  manifestKey: string;
  sha256: string | null;
  rowCount: number | null;
}

/**
 * Archives an erasure request has still to look through: complete or restored, and not in
 * the request's `progress.archivesDone`, oldest first.
 */
export async function archivesToErase(pool: pg.Pool, requestId: string): Promise<ErasableArchive[]> {
  const { rows } = await pool.query<ErasableArchive>(
    `SELECT a.id, a.object_key AS "objectKey", a.manifest_key AS "manifestKey", a.sha256,
            a.row_count::float8 AS "rowCount"
       FROM archives a, dsar_requests d
      WHERE d.id = $1 AND a.status IN ('complete', 'restored')
        AND NOT coalesce(d.progress->'archivesDone' ? a.id::text, false)
      ORDER BY a.created_at`,
    [requestId],
  );
  return rows;
}

/** Brings the row in line with an object rewritten in place (size, digest, count, time range). */
export async function recordArchiveContents(
  pool: pg.Pool,
  id: string,
  v: { rows: number; bytes: number; sha256: string; minOccurredAt?: string; maxOccurredAt?: string },
): Promise<void> {
  await pool.query(
    `UPDATE archives SET row_count = $2, bytes = $3, sha256 = $4, min_occurred_at = $5, max_occurred_at = $6
      WHERE id = $1`,
    [id, v.rows, v.bytes, v.sha256, v.minOccurredAt ?? null, v.maxOccurredAt ?? null],
  );
}

/** The object held nothing but erased rows and is gone: the row stays, empty, for the record. */
export async function recordArchiveEmptied(pool: pg.Pool, id: string): Promise<void> {
  await pool.query(
    `UPDATE archives SET row_count = 0, bytes = 0, sha256 = NULL, min_occurred_at = NULL, max_occurred_at = NULL
      WHERE id = $1`,
    [id],
  );
}
