import type pg from 'pg';

/*
 * The `sources` table (ARCHITECTURE §15): configurations, their committed positions and run
 * state, and the one-runner lease. Hand-written SQL: the lease compares expiry with the
 * database's clock (`now()`), claims use SKIP LOCKED, and every write a runner makes is
 * fenced by its holder name, so a runner whose lease was taken over cannot move the cursor.
 */

export interface SourceRow {
  id: string;
  kind: string;
  name: string;
  service: string;
  settings: Record<string, unknown>;
  secrets: string | null;
  paused: boolean;
  position: Record<string, unknown> | null;
  rowsRead: number;
  eventsAccepted: number;
  eventsDuplicate: number;
  eventsRejected: number;
  eventsSkipped: number;
  lastRejection: Record<string, unknown> | null;
  lastRunAt: Date | null;
  lastSuccessAt: Date | null;
  lastError: string | null;
  lastErrorAt: Date | null;
  failures: number;
  nextRunAt: Date;
  /** The process running it now (a lease not yet expired), or null. */
  runningOn: string | null;
  /** The lease's token (`<process>#<claim>`): every fenced write names it. */
  leaseHolder: string | null;
  createdAt: Date;
  updatedAt: Date;
}

const COLUMNS = `id, kind, name, service, settings, secrets, paused, position,
  rows_read::float8 AS "rowsRead", events_accepted::float8 AS "eventsAccepted",
  events_duplicate::float8 AS "eventsDuplicate", events_rejected::float8 AS "eventsRejected",
  events_skipped::float8 AS "eventsSkipped", last_rejection AS "lastRejection",
  last_run_at AS "lastRunAt", last_success_at AS "lastSuccessAt", last_error AS "lastError",
  last_error_at AS "lastErrorAt", failures, next_run_at AS "nextRunAt",
  CASE WHEN lease_expires_at > now() THEN split_part(lease_holder, '#', 1) END AS "runningOn",
  lease_holder AS "leaseHolder",
  created_at AS "createdAt", updated_at AS "updatedAt"`;

/** A source with this name exists already. */
export class SourceNameTakenError extends Error {
  override readonly name = 'SourceNameTakenError';
}

const nameTaken = (err: unknown): never => {
  const e = err as { code?: string; constraint?: string };
  if (e.code === '23505' && e.constraint === 'sources_name_idx') {
    throw new SourceNameTakenError('a source with this name exists already');
  }
  throw err;
};

export interface NewSourceRow {
  id: string;
  kind: string;
  name: string;
  service: string;
  settings: Record<string, unknown>;
  secrets: string | null;
  paused: boolean;
}

export async function insertSource(pool: pg.Pool, s: NewSourceRow): Promise<SourceRow> {
  const { rows } = await pool
    .query<SourceRow>(
      `INSERT INTO sources (id, kind, name, service, settings, secrets, paused)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${COLUMNS}`,
      [s.id, s.kind, s.name, s.service, JSON.stringify(s.settings), s.secrets, s.paused],
    )
    .catch(nameTaken);
  return rows[0] as SourceRow;
}

export async function listSources(pool: pg.Pool): Promise<SourceRow[]> {
  const { rows } = await pool.query<SourceRow>(`SELECT ${COLUMNS} FROM sources ORDER BY created_at, id`);
  return rows;
}

export async function getSource(pool: pg.Pool, id: string): Promise<SourceRow | undefined> {
  const { rows } = await pool.query<SourceRow>(`SELECT ${COLUMNS} FROM sources WHERE id = $1`, [id]);
  return rows[0];
}

export interface SourceChange {
  name: string;
  service: string;
  settings: Record<string, unknown>;
  secrets: string | null;
  paused: boolean;
  /** Forget the committed position: the next run reads from the start. */
  resetPosition: boolean;
}

/**
 * Writes a changed configuration; a source not paused is due at once. With `takeLease`, a
 * run in progress loses its lease (its next commit is refused and it stops), so the next run
 * reads with the new settings and position rather than the old run going on with the old.
 */
export async function updateSource(
  pool: pg.Pool,
  id: string,
  c: SourceChange & { takeLease: boolean },
): Promise<SourceRow | undefined> {
  const { rows } = await pool
    .query<SourceRow>(
      `UPDATE sources SET name = $2, service = $3, settings = $4, secrets = $5, paused = $6,
              position = CASE WHEN $7 THEN NULL ELSE position END,
              lease_holder = CASE WHEN $8 THEN NULL ELSE lease_holder END,
              lease_expires_at = CASE WHEN $8 THEN NULL ELSE lease_expires_at END,
              failures = 0, next_run_at = now(), updated_at = now()
        WHERE id = $1 RETURNING ${COLUMNS}`,
      [id, c.name, c.service, JSON.stringify(c.settings), c.secrets, c.paused, c.resetPosition, c.takeLease],
    )
    .catch(nameTaken);
  return rows[0];
}

export async function deleteSource(pool: pg.Pool, id: string): Promise<boolean> {
  const res = await pool.query(`DELETE FROM sources WHERE id = $1`, [id]);
  return (res.rowCount ?? 0) > 0;
}

/**
 * Takes the lease of up to `limit` pull sources that are due, not paused, not among
 * `running` (this process's runs), and not held by a live runner (a lease past its expiry is
 * free: its holder died or stalled), oldest due first. Each lease gets a token of its own
 * (`holder#<random>`, in `leaseHolder`), so a run that lost its lease cannot write even when
 * the same process took the source again.
 */
export async function claimDueSources(
  pool: pg.Pool,
  holder: string,
  ttlMs: number,
  limit: number,
  running: readonly string[] = [],
): Promise<SourceRow[]> {
  if (limit <= 0) return [];
  const { rows } = await pool.query<SourceRow>(
    `UPDATE sources SET lease_holder = $1 || '#' || substr(md5(random()::text), 1, 12),
            lease_expires_at = now() + $2::int * interval '1 millisecond'
      WHERE id IN (SELECT id FROM sources
                    WHERE kind <> 'webhook' AND NOT paused AND next_run_at <= now()
                      AND (lease_holder IS NULL OR lease_expires_at <= now())
                      AND id <> ALL($4::uuid[])
                    ORDER BY next_run_at LIMIT $3 FOR UPDATE SKIP LOCKED)
      RETURNING ${COLUMNS}`,
    [holder, ttlMs, limit, running],
  );
  return rows;
}

/** What a fenced write found: whether this runner still holds the lease, and whether the source was paused meanwhile. */
export interface LeaseCheck {
  held: boolean;
  paused: boolean;
}

const leaseCheck = (rows: { paused: boolean }[]): LeaseCheck => ({
  held: rows.length > 0,
  paused: rows[0]?.paused ?? false,
});

/** Extends the lease, only while `holder` has it. */
export async function renewSourceLease(
  pool: pg.Pool,
  id: string,
  holder: string,
  ttlMs: number,
): Promise<LeaseCheck> {
  const { rows } = await pool.query<{ paused: boolean }>(
    `UPDATE sources SET lease_expires_at = now() + $3::int * interval '1 millisecond'
      WHERE id = $1 AND lease_holder = $2 RETURNING paused`,
    [id, holder, ttlMs],
  );
  return leaseCheck(rows);
}

/** Counts of one batch's records. */
export interface BatchCounts {
  read: number;
  accepted: number;
  duplicate: number;
  rejected: number;
  skipped: number;
}

/**
 * Commits the position reached once a batch is buffered, with its counts and (when one was
 * refused) the last rejection; only while `holder` has the lease. It also renews the lease.
 */
export async function commitSourcePosition(
  pool: pg.Pool,
  id: string,
  holder: string,
  ttlMs: number,
  position: Record<string, unknown> | null,
  counts: BatchCounts,
  lastRejection: Record<string, unknown> | undefined,
): Promise<LeaseCheck> {
  const { rows } = await pool.query<{ paused: boolean }>(
    `UPDATE sources SET position = $3, rows_read = rows_read + $4, events_accepted = events_accepted + $5,
            events_duplicate = events_duplicate + $6, events_rejected = events_rejected + $7,
            events_skipped = events_skipped + $8, last_rejection = COALESCE($9, last_rejection),
            lease_expires_at = now() + $10::int * interval '1 millisecond'
      WHERE id = $1 AND lease_holder = $2 RETURNING paused`,
    [
      id,
      holder,
      position === null ? null : JSON.stringify(position),
      counts.read,
      counts.accepted,
      counts.duplicate,
      counts.rejected,
      counts.skipped,
      lastRejection === undefined ? null : JSON.stringify(lastRejection),
      ttlMs,
    ],
  );
  return leaseCheck(rows);
}

/**
 * Ends a run and gives the lease back: after a success the next run is due in `delayMs` and
 * the failure count is reset; after a failure `error` is recorded and the count grows.
 */
export async function finishSourceRun(
  pool: pg.Pool,
  id: string,
  holder: string,
  outcome: { ok: true; delayMs: number } | { ok: false; delayMs: number; error: string },
): Promise<void> {
  if (outcome.ok) {
    await pool.query(
      `UPDATE sources SET last_run_at = now(), last_success_at = now(), failures = 0,
              next_run_at = now() + $3::int * interval '1 millisecond',
              lease_holder = NULL, lease_expires_at = NULL
        WHERE id = $1 AND lease_holder = $2`,
      [id, holder, outcome.delayMs],
    );
    return;
  }
  await pool.query(
    `UPDATE sources SET last_run_at = now(), last_error = $4, last_error_at = now(), failures = failures + 1,
            next_run_at = now() + $3::int * interval '1 millisecond',
            lease_holder = NULL, lease_expires_at = NULL
      WHERE id = $1 AND lease_holder = $2`,
    [id, holder, outcome.delayMs, outcome.error],
  );
}

/** Gives the lease back without ending the run's record (a process stopping): due again at once, elsewhere. */
export async function releaseSourceLease(pool: pg.Pool, id: string, holder: string): Promise<void> {
  await pool.query(
    `UPDATE sources SET lease_holder = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_holder = $2`,
    [id, holder],
  );
}

/**
 * Adds a webhook source's deliveries (counted in an API process and written about once a
 * second): read, what became of them, the last refused one; `last_run_at` is the last delivery.
 */
export async function addWebhookDeliveries(
  pool: pg.Pool,
  id: string,
  counts: BatchCounts,
  lastRejection: Record<string, unknown> | undefined,
): Promise<void> {
  await pool.query(
    `UPDATE sources SET rows_read = rows_read + $2, events_accepted = events_accepted + $3,
            events_duplicate = events_duplicate + $4, events_rejected = events_rejected + $5,
            events_skipped = events_skipped + $6, last_rejection = COALESCE($7, last_rejection),
            last_run_at = now(),
            last_success_at = CASE WHEN $3 + $4 + $6 > 0 THEN now() ELSE last_success_at END
      WHERE id = $1`,
    [
      id,
      counts.read,
      counts.accepted,
      counts.duplicate,
      counts.rejected,
      counts.skipped,
      lastRejection === undefined ? null : JSON.stringify(lastRejection),
    ],
  );
}
