import type pg from 'pg';

/*
 * Reading and annotating `retention_runs`, the record of every retention pass (and of every
 * erasure's turn at the archive): the lease itself is store/run-leases.repo.ts. Hand-written
 * SQL, moved unchanged from retention/: bigint counters are read as float8 numbers under the
 * camel-cased names the admin API returns.
 */

/** One retention pass as the admin API shows it. */
export interface RunRecord {
  id: string;
  trigger: string;
  status: string;
  holder: string;
  startedAt: string;
  heartbeatAt: string;
  finishedAt: string | null;
  rowsArchived: number;
  bytesArchived: number;
  rowsDeleted: number;
  rowsAnonymized: number;
  partitionsDropped: string[];
  steps: unknown[];
  error: string | null;
}

const RUN_COLUMNS = `id, trigger, status, holder, started_at AS "startedAt", heartbeat_at AS "heartbeatAt",
  finished_at AS "finishedAt", rows_archived::float8 AS "rowsArchived", bytes_archived::float8 AS "bytesArchived",
  rows_deleted::float8 AS "rowsDeleted", rows_anonymized::float8 AS "rowsAnonymized",
  partitions_dropped AS "partitionsDropped", steps, error`;

/** One run with its step log; undefined when no run has this id. */
export async function getRun(pool: pg.Pool, id: string): Promise<RunRecord | undefined> {
  const { rows } = await pool.query<RunRecord>(`SELECT ${RUN_COLUMNS} FROM retention_runs WHERE id = $1`, [
    id,
  ]);
  return rows[0];
}

/** The newest runs first, without their step logs. */
export async function listRuns(pool: pg.Pool, limit: number): Promise<Omit<RunRecord, 'steps'>[]> {
  const { rows } = await pool.query<RunRecord>(
    `SELECT ${RUN_COLUMNS} FROM retention_runs ORDER BY started_at DESC LIMIT $1`,
    [limit],
  );
  return rows.map(({ steps: _steps, ...rest }) => rest);
}

/** Start of the newest completed pass, or undefined when none completed. */
export async function lastCompletedRun(pool: pg.Pool): Promise<Date | undefined> {
  const { rows } = await pool.query<{ at: Date | null }>(
    `SELECT max(started_at) AS at FROM retention_runs WHERE status = 'completed' AND trigger <> 'erasure'`,
  );
  return rows[0]?.at ?? undefined;
}

/**
 * When the newest completed pass finished, Unix seconds; 0 when none has. Erasures' turns
 * at the archive are not passes, so they do not count.
 */
export async function lastRetentionSuccess(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ t: number | null }>(
    `SELECT extract(epoch FROM max(finished_at))::float8 AS t FROM retention_runs WHERE status = 'completed' AND trigger <> 'erasure'`,
  );
  return rows[0]?.t ?? 0;
}

/** Adds a dropped partition to the run's record, in the transaction that drops it. */
export async function recordPartitionDropped(
  client: pg.ClientBase,
  runId: string,
  table: string,
): Promise<void> {
  await client.query(
    `UPDATE retention_runs SET partitions_dropped = array_append(partitions_dropped, $2) WHERE id = $1`,
    [runId, table],
  );
}
