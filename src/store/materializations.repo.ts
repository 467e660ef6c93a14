import type pg from 'pg';
import type { FeedPosition, TypedColumn } from './mat-batch.repo.ts';
import { dropSchema } from './mat-ddl.ts';

/**
 * Materialisations (ARCHITECTURE §17): their configuration, feed position, lease and catalog.
 * Hand-written SQL: the lease compares its expiry with the database's clock, and a batch's
 * position is written in the batch's own transaction, fenced by the lease holder.
 */

export interface MaterializationRow {
  name: string;
  spec: Record<string, unknown>;
  state: string;
  cursorXid: string | null;
  cursorSeq: number;
  rebuildRequestedAt: Date | null;
  /** The same, exact (microseconds), to clear exactly the request a rebuild served. */
  rebuildRequestedExact: string | null;
  /** The first archived month (`YYYY-MM`) the requested rebuild also reads; null: `events` only. */
  rebuildArchivedFrom: string | null;
  appliedUntil: Date | null;
  lastBatchAt: Date | null;
  lastRebuildAt: Date | null;
  /** The first archived month the last rebuild read (its tables hold them), or null. */
  lastRebuildArchivedFrom: string | null;
  eventsApplied: number;
  lastError: string | null;
  lastErrorAt: Date | null;
  failures: number;
  /** The process building it now (a lease not yet expired), or null. */
  runningOn: string | null;
  createdAt: Date;
  updatedAt: Date;
}

const COLUMNS = `name, spec, state, cursor_xid::text AS "cursorXid", cursor_seq::int8 AS "cursorSeq",
  rebuild_requested_at AS "rebuildRequestedAt", rebuild_requested_at::text AS "rebuildRequestedExact", applied_until AS "appliedUntil", last_batch_at AS "lastBatchAt",
  rebuild_archived_from AS "rebuildArchivedFrom", last_rebuild_archived_from AS "lastRebuildArchivedFrom",
  last_rebuild_at AS "lastRebuildAt", events_applied::int8 AS "eventsApplied", last_error AS "lastError",
  last_error_at AS "lastErrorAt", failures,
  CASE WHEN lease_expires_at > now() THEN split_part(lease_holder, '#', 1) END AS "runningOn",
  created_at AS "createdAt", updated_at AS "updatedAt"`;

const fromRow = (r: MaterializationRow): MaterializationRow => ({
  ...r,
  cursorSeq: Number(r.cursorSeq),
  eventsApplied: Number(r.eventsApplied),
});

export async function listMaterializations(pool: pg.Pool): Promise<MaterializationRow[]> {
  const r = await pool.query<MaterializationRow>(`SELECT ${COLUMNS} FROM materializations ORDER BY name`);
  return r.rows.map(fromRow);
}

export async function getMaterialization(
  pool: pg.Pool,
  name: string,
): Promise<MaterializationRow | undefined> {
  const r = await pool.query<MaterializationRow>(`SELECT ${COLUMNS} FROM materializations WHERE name = $1`, [
    name,
  ]);
  return r.rows[0] ? fromRow(r.rows[0]) : undefined;
}

/**
 * The archived months a rebuild nobody asked for (a new spec, anonymised events) reads: those
 * of the rebuild already asked for, else those the tables hold now, so that it does not drop them.
 */
const keepArchived = (m: string) =>
  `CASE WHEN ${m}.rebuild_requested_at IS NOT NULL THEN ${m}.rebuild_archived_from ELSE ${m}.last_rebuild_archived_from END`;

/**
 * Creates or changes a materialisation. A new one, or one whose spec changed, is (re)built
 * from `events` by its runner before it follows the feed again (and from the archived months
 * its tables hold, {@link keepArchived}). Returns whether it was created.
 */
export async function putMaterialization(pool: pg.Pool, name: string, spec: unknown): Promise<boolean> {
  const r = await pool.query<{ created: boolean }>(
    `INSERT INTO materializations AS m (name, spec) VALUES ($1, $2::jsonb)
     ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, rebuild_requested_at = now(), updated_at = now(),
            rebuild_archived_from = ${keepArchived('m')}
      WHERE m.spec IS DISTINCT FROM EXCLUDED.spec
     RETURNING (xmax = 0) AS created`,
    [name, JSON.stringify(spec)],
  );
  return r.rows[0]?.created ?? false;
}

/**
 * Asks its runner to rebuild it: from `events`, and with `archivedFrom` (`YYYY-MM`) from the
 * archived months from it on as well. False when there is no such materialisation.
 */
export async function requestRebuild(
  pool: pg.Pool,
  name: string,
  archivedFrom: string | null,
): Promise<boolean> {
  const r = await pool.query(
    `UPDATE materializations SET rebuild_requested_at = now(), rebuild_archived_from = $2, updated_at = now()
      WHERE name = $1`,
    [name, archivedFrom],
  );
  return (r.rowCount ?? 0) > 0;
}

/** Asks every materialisation to be rebuilt (their events changed in place: anonymised). */
export async function requestRebuildAll(pool: pg.Pool): Promise<void> {
  await pool.query(
    `UPDATE materializations m SET rebuild_requested_at = now(), rebuild_archived_from = ${keepArchived('m')}, updated_at = now()`,
  );
}

/**
 * Deletes a materialisation and drops its schemas (live and shadow), once any batch under way
 * has committed (the row lock). False when there was none.
 */
export async function deleteMaterialization(
  pool: pg.Pool,
  name: string,
  schemas: readonly string[],
): Promise<boolean> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // The row first, as a batch locks it: then its tables, once no batch or sync read holds them.
    const held = await client.query('SELECT 1 FROM materializations WHERE name = $1 FOR UPDATE', [name]);
    if (held.rowCount === 0) {
      await client.query('ROLLBACK');
      return false;
    }
    for (const schema of schemas) await dropSchema(client, schema);
    const r = await client.query('DELETE FROM materializations WHERE name = $1', [name]);
    await client.query('COMMIT');
    return (r.rowCount ?? 0) > 0;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Takes or renews the lease of every materialisation free or already held by `holder`, for
 * `ttlS`; returns their names. One runner per materialisation across processes. A row locked
 * by a batch under way is skipped, not waited for: its lease is not taken over mid-batch.
 */
export async function claimMaterializations(pool: pg.Pool, holder: string, ttlS: number): Promise<string[]> {
  const r = await pool.query<{ name: string }>(
    `UPDATE materializations SET lease_holder = $1, lease_expires_at = now() + make_interval(secs => $2)
      WHERE name IN (SELECT name FROM materializations
                      WHERE lease_holder = $1 OR lease_expires_at IS NULL OR lease_expires_at < now()
                      FOR UPDATE SKIP LOCKED)
      RETURNING name`,
    [holder, ttlS],
  );
  return r.rows.map((x) => x.name).sort();
}

/** Gives this process's leases back (a graceful stop): another process takes them at once. */
export async function releaseMaterializations(pool: pg.Pool, holder: string): Promise<void> {
  await pool.query(
    `UPDATE materializations SET lease_holder = NULL, lease_expires_at = NULL WHERE lease_holder = $1`,
    [holder],
  );
}

/**
 * Locks the materialisation for one batch, in the caller's transaction, if `holder` still
 * holds its lease (else undefined: another process took it over, and this one stops).
 * Erasure takes the same lock, so it never interleaves with a batch.
 */
export async function lockForBatch(
  client: pg.PoolClient,
  name: string,
  holder: string,
): Promise<MaterializationRow | undefined> {
  const r = await client.query<MaterializationRow>(
    `SELECT ${COLUMNS} FROM materializations
      WHERE name = $1 AND lease_holder = $2 AND lease_expires_at > now() FOR UPDATE`,
    [name, holder],
  );
  return r.rows[0] ? fromRow(r.rows[0]) : undefined;
}

/**
 * Opens a batch's transaction; a rebuild's is REPEATABLE READ, so that its read of `events`
 * and the feed position it records come from one snapshot.
 */
export async function beginBatch(client: pg.PoolClient, rebuild = false): Promise<void> {
  await client.query(rebuild ? 'BEGIN ISOLATION LEVEL REPEATABLE READ' : 'BEGIN');
}

/**
 * Moves the feed position after a batch, in the batch's transaction. After a rebuild,
 * `rebuiltFrom` is the request it served (cleared unless a newer one came) and `archivedFrom`
 * the first archived month it read (kept as the last rebuild's).
 */
export async function commitPosition(
  client: pg.PoolClient,
  name: string,
  next: FeedPosition,
  events: number,
  newest: Date | null,
  rebuiltFrom?: string | null,
  archivedFrom: string | null = null,
): Promise<void> {
  await client.query(
    `UPDATE materializations
        SET cursor_xid = $2::xid8, cursor_seq = $3, events_applied = events_applied + $4,
            applied_until = greatest(applied_until, $5), last_batch_at = now(), state = 'running',
            failures = 0, last_error = NULL, updated_at = now(),
            last_rebuild_at = CASE WHEN $6::boolean THEN now() ELSE last_rebuild_at END,
            last_rebuild_archived_from = CASE WHEN $6::boolean THEN $8 ELSE last_rebuild_archived_from END,
            rebuild_archived_from = CASE WHEN $6::boolean AND rebuild_requested_at <= $7::timestamptz THEN NULL
                                         ELSE rebuild_archived_from END,
            rebuild_requested_at = CASE WHEN $6::boolean AND rebuild_requested_at <= $7::timestamptz THEN NULL
                                        ELSE rebuild_requested_at END
      WHERE name = $1`,
    [name, next.xid, next.seq, events, newest, rebuiltFrom !== undefined, rebuiltFrom ?? null, archivedFrom],
  );
}

/** A batch or rebuild failed: kept in the state (retried by the runner). */
export async function recordFailure(pool: pg.Pool, name: string, message: string): Promise<void> {
  await pool.query(
    `UPDATE materializations SET failures = failures + 1, last_error = $2, last_error_at = now(),
            state = CASE WHEN state = 'building' THEN state ELSE 'failed' END
      WHERE name = $1`,
    [name, message.slice(0, 2000)],
  );
}

/**
 * Feed rows every materialisation has passed (and, with none, every finished one) are
 * deleted, `limit` at a time. Returns the rows deleted.
 */
export async function pruneFeed(pool: pg.Pool, limit: number): Promise<number> {
  const r = await pool.query(
    `WITH bound AS (
       SELECT least((SELECT min(ARRAY[cursor_xid::text::numeric, cursor_seq::numeric]) FROM materializations
                      WHERE cursor_xid IS NOT NULL AND rebuild_requested_at IS NULL),
                    ARRAY[pg_snapshot_xmin(pg_current_snapshot())::text::numeric, 0]) AS b)
     DELETE FROM event_feed WHERE (xid, seq) IN (
       SELECT xid, seq FROM event_feed, bound
        WHERE ARRAY[xid::text::numeric, seq::numeric] < bound.b ORDER BY xid, seq LIMIT $1)`,
    [limit],
  );
  return r.rowCount ?? 0;
}

/** The age in seconds of the oldest event not yet applied (0: none): one row read, for the lag gauge. */
export async function lagOf(pool: pg.Pool, cursor: FeedPosition): Promise<number> {
  const r = await pool.query<{ lag: number | null }>(
    `SELECT extract(epoch FROM now() - e.received_at)::float8 AS lag FROM event_feed f
       JOIN events e ON e.occurred_at = f.occurred_at AND e.id = f.id AND e.service = f.service
      WHERE (f.xid, f.seq) >= ($1::xid8, $2::bigint) ORDER BY f.xid, f.seq LIMIT 1`,
    [cursor.xid, cursor.seq],
  );
  return Math.max(0, r.rows[0]?.lag ?? 0);
}

/** Feed rows not yet applied, and the age in seconds of the oldest one's event (its ingest). */
export async function pendingOf(
  pool: pg.Pool,
  cursor: FeedPosition | null,
): Promise<{ pending: number; lagS: number }> {
  const r = await pool.query<{ pending: string; lag: number | null }>(
    `SELECT (SELECT count(*) FROM (SELECT 1 FROM event_feed WHERE (xid, seq) >= ($1::xid8, $2::bigint) LIMIT 1000000) p) AS pending,
            (SELECT extract(epoch FROM now() - e.received_at)::float8 FROM event_feed f
               JOIN events e ON e.occurred_at = f.occurred_at AND e.id = f.id AND e.service = f.service
              WHERE (f.xid, f.seq) >= ($1::xid8, $2::bigint) ORDER BY f.xid, f.seq LIMIT 1) AS lag`,
    [cursor?.xid ?? '0', cursor?.seq ?? 0],
  );
  return { pending: Number(r.rows[0]?.pending ?? 0), lagS: Math.max(0, r.rows[0]?.lag ?? 0) };
}

/** A destination synced: a failure that was its own is over. */
export async function recordSynced(pool: pg.Pool, name: string): Promise<void> {
  await pool.query(
    `UPDATE materializations SET state = 'running', failures = 0, last_error = NULL, updated_at = now()
      WHERE name = $1 AND state = 'failed' AND last_error LIKE 'destination:%'`,
    [name],
  );
}

/**
 * Holds a materialisation's row for a destination sync's read (FOR SHARE): a deletion, an
 * erasure or a batch locks the row before its tables too, so they wait for one another
 * instead of locking the tables in different orders. False when it is gone.
 */
export async function lockForSync(client: pg.ClientBase, name: string): Promise<boolean> {
  const r = await client.query('SELECT 1 FROM materializations WHERE name = $1 FOR SHARE', [name]);
  return (r.rowCount ?? 0) > 0;
}
