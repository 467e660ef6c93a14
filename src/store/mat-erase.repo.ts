import type pg from 'pg';
import { BUILD_SCHEMA_SQL, ident } from './mat-ddl.ts';
import { recountDays } from './mat-upsert.repo.ts';

/**
 * Erasure in the materialisations (ARCHITECTURE §8, §17): every row of the subject's ids (its
 * user ids, pseudonyms and linked anonymous ids) in every table of every materialisation,
 * its `users` row and identity links, and the `daily_counts` of the days those rows were on,
 * recomputed from `events` (already erased). One transaction that first locks every
 * materialisation's row, as each batch does: no batch interleaves, so none writes back a row
 * read before the events were deleted. The count is added to the request in the same
 * transaction. Returns the rows deleted.
 */
export async function eraseMaterialized(
  pool: pg.Pool,
  requestId: string,
  ids: readonly string[],
): Promise<number> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const mats = await client.query<{ schema: string }>(
      `SELECT ${BUILD_SCHEMA_SQL} AS schema FROM materializations ORDER BY name FOR UPDATE`,
    );
    let deleted = 0;
    for (const { schema } of mats.rows) {
      deleted += await eraseInSchema(client, schema, ids);
    }
    await client.query(
      `UPDATE dsar_requests
          SET progress = progress || jsonb_build_object('deletedMaterialized',
                           coalesce((progress->>'deletedMaterialized')::bigint, 0) + $2::bigint)
        WHERE id = $1`,
      [requestId, deleted],
    );
    await client.query('COMMIT');
    return deleted;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

async function eraseInSchema(client: pg.PoolClient, schema: string, ids: readonly string[]): Promise<number> {
  const s = ident(schema);
  // Tables with the per-event columns: the six call tables and every event table.
  const tables = await client.query<{ name: string; previous: boolean }>(
    `SELECT table_name AS name, bool_or(column_name = 'previous_id') AS previous
       FROM information_schema.columns
      WHERE table_schema = $1 AND column_name IN ('anonymous_id', 'previous_id')
        AND table_name <> 'identity_links'
      GROUP BY table_name ORDER BY table_name`,
    [schema],
  );
  if (tables.rowCount === 0) return 0;
  await client.query('CREATE TEMP TABLE mat_erased_days (service text, day date) ON COMMIT DROP');
  let deleted = 0;
  for (const { name, previous } of tables.rows) {
    const r = await client.query<{ n: string }>(
      `WITH gone AS (
         DELETE FROM ${s}.${ident(name)}
          WHERE user_id = ANY($1::text[]) OR anonymous_id = ANY($1::text[])
                ${previous ? 'OR previous_id = ANY($1::text[])' : ''}
          RETURNING service, occurred_at),
       days AS (INSERT INTO mat_erased_days SELECT DISTINCT service, (occurred_at AT TIME ZONE 'UTC')::date FROM gone)
       SELECT count(*) AS n FROM gone`,
      [ids],
    );
    deleted += Number(r.rows[0]?.n ?? 0);
  }
  const users = await client.query(`DELETE FROM ${s}.users WHERE user_id = ANY($1::text[])`, [ids]);
  const links = await client.query(
    `DELETE FROM ${s}.identity_links WHERE anonymous_id = ANY($1::text[]) OR user_id = ANY($1::text[])`,
    [ids],
  );
  deleted += (users.rowCount ?? 0) + (links.rowCount ?? 0);
  await recountDays(client, schema, 'SELECT DISTINCT service, day FROM mat_erased_days');
  await client.query('DROP TABLE mat_erased_days');
  return deleted;
}

/**
 * Retention (§7, §17): the materialised rows of events that retention deleted or dropped,
 * `[from, to)` (of one service, or all), from every per-event table and `daily_counts` of
 * every materialisation. `users`, `accounts` and `identity_links` keep their state. In the
 * caller's transaction, after any batch under way (the materialisations' row locks). Returns
 * the rows deleted.
 */
export async function dropMaterializedRange(
  db: pg.ClientBase,
  range: { from: Date; to: Date; service?: string },
): Promise<number> {
  const schemas = await db.query<{ schema: string }>(
    `SELECT ${BUILD_SCHEMA_SQL} AS schema FROM materializations ORDER BY name FOR UPDATE`,
  );
  const service = range.service ?? null;
  let deleted = 0;
  for (const { schema } of schemas.rows) {
    const tables = await db.query<{ name: string }>(
      `SELECT table_name AS name FROM information_schema.columns
        WHERE table_schema = $1 AND column_name = 'occurred_at' ORDER BY 1`,
      [schema],
    );
    if (tables.rowCount === 0) continue; // not built yet
    for (const { name } of tables.rows) {
      const r = await db.query(
        `DELETE FROM ${ident(schema)}.${ident(name)}
          WHERE occurred_at >= $1 AND occurred_at < $2 AND ($3::text IS NULL OR service = $3)`,
        [range.from, range.to, service],
      );
      deleted += r.rowCount ?? 0;
    }
    const days = await db.query(
      `DELETE FROM ${ident(schema)}.daily_counts
        WHERE day >= ($1::timestamptz AT TIME ZONE 'UTC')::date AND day < ($2::timestamptz AT TIME ZONE 'UTC')::date
          AND ($3::text IS NULL OR service = $3)`,
      [range.from, range.to, service],
    );
    deleted += days.rowCount ?? 0;
  }
  return deleted;
}

/** {@link dropMaterializedRange} in a transaction of its own. */
export async function dropMaterializedRangeNow(
  pool: pg.Pool,
  range: { from: Date; to: Date; service?: string },
): Promise<number> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const n = await dropMaterializedRange(client, range);
    await client.query('COMMIT');
    return n;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
