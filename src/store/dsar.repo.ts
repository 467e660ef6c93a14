import type pg from 'pg';

/*
 * The `dsar_requests` table, and the erasure's deletes from `events` (counted into the
 * request in the same statement). Hand-written SQL, moved unchanged from compliance/:
 * a data-modifying CTE (DELETE … RETURNING feeding an UPDATE), jsonb progress updates,
 * and request times read as epoch milliseconds, the unit of the subject registry's messages.
 */

/** An erasure request as `GET /v1/dsar/:requestId` answers it (before Redis drop counts). */
export interface DsarStatus {
  requestId: string;
  userId: string;
  status: 'pending' | 'running' | 'completed' | 'failed';
  requestedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  deleted: {
    database: number;
    buffer: number;
    checkpoint: number;
    archive: number;
    deadLetter: number;
    materialized: number;
  };
  archivesRewritten: number;
  error: string | null;
}

/**
 * Records a pending erasure request. `bufferHorizons` holds the newest stream entry id of
 * every partition at the time (by partition): the job waits until workers are past them.
 * `subjects`: the subject's ids (`userId` and the ids linked to it), kept in `progress`
 * (requests from before links have none and cover `user_id` alone).
 * @returns its id and request time (epoch ms).
 */
export async function createErasureRequest(
  pool: pg.Pool,
  userId: string,
  keyId: string | null,
  bufferHorizons: readonly string[],
  subjects: readonly string[],
): Promise<{ id: string; at: number }> {
  const { rows } = await pool.query<{ id: string; at: number }>(
    `INSERT INTO dsar_requests (kind, user_id, status, key_id, progress)
     VALUES ('erasure', $1, 'pending', $2,
             jsonb_build_object('bufferHorizons', to_jsonb($3::text[]), 'subjects', to_jsonb($4::text[])))
     RETURNING id, (extract(epoch FROM requested_at) * 1000)::float8 AS at`,
    [userId, keyId, bufferHorizons, subjects],
  );
  const { id, at } = rows[0] as { id: string; at: number };
  return { id, at: Number(at) };
}

/** The erasure request as recorded; undefined when no erasure has this id. */
export async function erasureStatus(pool: pg.Pool, id: string): Promise<DsarStatus | undefined> {
  const { rows } = await pool.query<DsarStatus>(
    `SELECT id AS "requestId", user_id AS "userId", status, requested_at AS "requestedAt", started_at AS "startedAt",
            finished_at AS "finishedAt", archives_rewritten AS "archivesRewritten", error,
            json_build_object('database', deleted_database, 'buffer', deleted_buffer,
                              'checkpoint', deleted_checkpoint, 'archive', deleted_archive,
                              'deadLetter', coalesce((progress->>'deletedDeadLetter')::bigint, 0),
                              'materialized', coalesce((progress->>'deletedMaterialized')::bigint, 0)) AS deleted
       FROM dsar_requests WHERE id = $1 AND kind = 'erasure'`,
    [id],
  );
  return rows[0];
}

/**
 * Erasure requests not failed (completed ones included: their subjects stay erased), with
 * their request time (epoch ms) and the subject ids they cover (`userId` alone for requests
 * from before links).
 */
export async function openErasureRequests(
  pool: pg.Pool,
): Promise<{ id: string; userId: string; at: number; subjects: string[] }[]> {
  const { rows } = await pool.query<{ id: string; user_id: string; at: string; subjects: string[] | null }>(
    `SELECT id, user_id, (extract(epoch FROM requested_at) * 1000)::float8 AS at, progress->'subjects' AS subjects
       FROM dsar_requests WHERE kind = 'erasure' AND status <> 'failed'`,
  );
  return rows.map((r) => ({
    id: r.id,
    userId: r.user_id,
    at: Number(r.at),
    subjects: Array.isArray(r.subjects) ? r.subjects : [r.user_id],
  }));
}

/**
 * Adds subject ids found linked after the request was made to those it covers
 * (`progress.subjects`, kept in order; a worker may have added some meanwhile).
 * @returns every subject id the request covers now.
 */
export async function recordErasureSubjects(
  pool: pg.Pool,
  id: string,
  subjects: readonly string[],
): Promise<string[]> {
  const { rows } = await pool.query<{ subjects: string[] }>(
    `UPDATE dsar_requests
        SET progress = jsonb_set(progress, '{subjects}',
              (SELECT jsonb_agg(s ORDER BY first) FROM (
                 SELECT s, min(n) AS first FROM (
                   SELECT s, n FROM jsonb_array_elements_text(coalesce(progress->'subjects', jsonb_build_array(user_id)))
                                    WITH ORDINALITY AS a(s, n)
                   UNION ALL
                   SELECT s, 1000000 + n FROM unnest($2::text[]) WITH ORDINALITY AS b(s, n)) AS both_sets
                 GROUP BY s) AS merged))
      WHERE id = $1 RETURNING progress->'subjects' AS subjects`,
    [id, subjects],
  );
  return rows[0]?.subjects ?? [...subjects];
}

/**
 * Adds `linked` to an erasure request's subjects, found linked to one of them by an event
 * the erasure covers after the job had looked (an alias call in a checkpoint replayed
 * late). A completed request is reopened (pending: a job runs it again, every step being
 * idempotent); a running one is reopened when it completes ({@link completeRequest}).
 * @returns the request's subject, time (epoch ms) and subject ids now; undefined when the
 * id was already one of them, or the request failed or is not an erasure.
 */
export async function extendErasureRequest(
  pool: pg.Pool,
  id: string,
  linked: string,
): Promise<{ userId: string; at: number; subjects: string[] } | undefined> {
  const { rows } = await pool.query<{ user_id: string; at: number; subjects: string[] }>(
    `UPDATE dsar_requests
        SET progress = jsonb_set(progress, '{subjects}',
                                 coalesce(progress->'subjects', jsonb_build_array(user_id)) || to_jsonb($2::text)),
            status = CASE WHEN status = 'completed' THEN 'pending' ELSE status END
      WHERE id = $1 AND kind = 'erasure' AND status <> 'failed'
        AND NOT coalesce(progress->'subjects', jsonb_build_array(user_id)) ? $2
    RETURNING user_id, (extract(epoch FROM requested_at) * 1000)::float8 AS at, progress->'subjects' AS subjects`,
    [id, linked],
  );
  const row = rows[0];
  return row ? { userId: row.user_id, at: Number(row.at), subjects: row.subjects } : undefined;
}

/**
 * Before a request's pass over the archives: the archives it recorded as done were looked
 * through for another set of subject ids (`subjects`, its size) when that set has changed
 * since, so they are forgotten and looked through again.
 */
export async function startArchivePass(pool: pg.Pool, id: string, subjects: number): Promise<void> {
  await pool.query(
    `UPDATE dsar_requests
        SET progress = (progress - 'archivesDone') || jsonb_build_object('archiveSubjects', $2::int)
      WHERE id = $1 AND (progress->>'archiveSubjects')::int IS DISTINCT FROM $2::int`,
    [id, subjects],
  );
}

/** Up to ten requests to run: pending, or running with no heartbeat for `staleMs`; oldest first. */
export async function requestsToRun(pool: pg.Pool, staleMs: number): Promise<string[]> {
  const { rows } = await pool.query<{ id: string }>(
    `SELECT id FROM dsar_requests
      WHERE status = 'pending' OR (status = 'running' AND heartbeat_at < now() - $1::int * interval '1 ms')
      ORDER BY requested_at LIMIT 10`,
    [staleMs],
  );
  return rows.map((r) => r.id);
}

/** A request claimed by this process: its subject, progress and request time (epoch ms). */
export interface ClaimedRequest {
  userId: string;
  progress: Record<string, unknown>;
  at: number;
}

/**
 * Claims a request (the row is the lease): pending, or running with no heartbeat for
 * `staleMs` (its runner died). Undefined when a live runner has it or it is finished.
 */
export async function claimRequest(
  pool: pg.Pool,
  id: string,
  staleMs: number,
): Promise<ClaimedRequest | undefined> {
  const { rows } = await pool.query<{ user_id: string; progress: Record<string, unknown>; at: number }>(
    `UPDATE dsar_requests SET status = 'running', started_at = coalesce(started_at, now()), heartbeat_at = now()
      WHERE id = $1 AND (status = 'pending'
            OR (status = 'running' AND heartbeat_at < now() - $2::int * interval '1 ms'))
    RETURNING user_id, progress, (extract(epoch FROM requested_at) * 1000)::float8 AS at`,
    [id, staleMs],
  );
  const row = rows[0];
  return row ? { userId: row.user_id, progress: row.progress, at: row.at } : undefined;
}

/** Extends a claimed request's lease. */
export async function heartbeatRequest(pool: pg.Pool, id: string): Promise<void> {
  await pool.query(`UPDATE dsar_requests SET heartbeat_at = now() WHERE id = $1`, [id]);
}

/** Notes why a running request paused; it stays `running` until a poller takes it over. */
export async function recordRequestError(pool: pg.Pool, id: string, message: string): Promise<void> {
  await pool.query(`UPDATE dsar_requests SET error = $2 WHERE id = $1 AND status = 'running'`, [id, message]);
}

/**
 * Marks a request completed with the buffer and checkpoint drops workers counted and the
 * dead letters deleted. That last count is kept in `progress` (`deletedDeadLetter`) rather
 * than a column of its own, so it needed no migration. When the request has gained subject
 * ids since the job read them (`subjects`: how many it erased), it goes back to pending
 * instead, for a job to erase those too.
 * @returns whether it completed.
 */
export async function completeRequest(
  pool: pg.Pool,
  id: string,
  dropped: { buffer: number; checkpoint: number; deadLetter: number },
  subjects = 1,
): Promise<boolean> {
  const { rows } = await pool.query<{ status: string }>(
    `UPDATE dsar_requests
        SET status = CASE WHEN jsonb_array_length(coalesce(progress->'subjects', '[]')) > $5 THEN 'pending' ELSE 'completed' END,
            finished_at = now(), error = NULL,
            deleted_buffer = $2, deleted_checkpoint = $3,
            progress = progress || jsonb_build_object('deletedDeadLetter', $4::bigint)
      WHERE id = $1 RETURNING status`,
    [id, dropped.buffer, dropped.checkpoint, dropped.deadLetter, subjects],
  );
  return rows[0]?.status === 'completed';
}

/**
 * Deletes up to `batchRows` events whose user_id or anonymous_id is one of `subjectIds`
 * (each found through its own index) and adds the count to the request, in one statement:
 * a job killed between batches neither loses nor double-counts a batch.
 * @returns the rows deleted (0 when none are left).
 */
export async function eraseEventsBatch(
  pool: pg.Pool,
  requestId: string,
  subjectIds: readonly string[],
  batchRows: number,
): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `WITH gone AS (
       DELETE FROM events WHERE (occurred_at, id, service) IN (
         (SELECT occurred_at, id, service FROM events WHERE user_id = ANY($1::text[])
          UNION ALL
          SELECT occurred_at, id, service FROM events WHERE anonymous_id = ANY($1::text[]))
         LIMIT $2)
       RETURNING 1)
     UPDATE dsar_requests SET deleted_database = deleted_database + (SELECT count(*) FROM gone)
      WHERE id = $3 RETURNING (SELECT count(*) FROM gone)::int AS n`,
    [subjectIds, batchRows, requestId],
  );
  return rows[0]?.n ?? 0;
}

/**
 * Records one archive object as done for the request (added to `progress.archivesDone`),
 * with the rows removed from it; an object that lost rows counts as rewritten.
 */
export async function recordArchiveErased(
  pool: pg.Pool,
  requestId: string,
  archiveId: string,
  rows: number,
): Promise<void> {
  await pool.query(
    `UPDATE dsar_requests
        SET progress = jsonb_set(progress, '{archivesDone}', coalesce(progress->'archivesDone', '[]'::jsonb) || to_jsonb($2::text)),
            deleted_archive = deleted_archive + $3, archives_rewritten = archives_rewritten + $4
      WHERE id = $1`,
    [requestId, archiveId, rows, rows > 0 ? 1 : 0],
  );
}
