import type pg from 'pg';
import type { TypedColumn } from './mat-batch.repo.ts';
import { ident, pathLiteral } from './mat-ddl.ts';

/**
 * The upsert and delete + insert tables of a materialisation (ARCHITECTURE §17), from the
 * batch in `mat_batch`: `users` / `accounts` (each trait last-writer-wins by
 * (occurred_at, received_at, id), merged commutatively, so arrival order never matters),
 * `identity_links` (the latest user id of an anonymous id, by the same order) and
 * `daily_counts` (every touched day recomputed from `events`, so late events are counted; in a
 * rebuild, every day from the batch, which holds all its events, archived months' included).
 */

const TRAIT_TABLES = {
  users: { key: 'user_id', where: `call = 'identify' AND user_id IS NOT NULL` },
  accounts: { key: 'group_id', where: `call = 'group' AND group_id IS NOT NULL` },
} as const;
export type TraitTable = keyof typeof TRAIT_TABLES;

/**
 * Merges the batch's traits into `users` or `accounts`: within the batch, each trait's value
 * of the highest version; against the stored row, tributary_lww_merge. Then the typed
 * columns of the touched rows (of every row when `allRows`: columns were just added) are
 * projected again from the merged traits. Returns the rows touched.
 */
export async function upsertTraits(
  client: pg.PoolClient,
  schema: string,
  table: TraitTable,
  typed: readonly TypedColumn[],
  allRows: boolean,
): Promise<number> {
  const { key, where } = TRAIT_TABLES[table];
  const target = `${ident(schema)}.${table}`;
  const r = await client.query(
    `INSERT INTO ${target} AS t (service, ${key}, state, first_seen_at, last_seen_at)
     SELECT b.service, b.${key}, coalesce(st.state, '{}'::jsonb), b.first_seen_at, b.last_seen_at
       FROM (SELECT service, ${key}, min(occurred_at) AS first_seen_at, max(occurred_at) AS last_seen_at
               FROM mat_batch WHERE included AND ${where} GROUP BY 1, 2) b
       LEFT JOIN (SELECT service, ${key}, jsonb_object_agg(k, sv) AS state
                    FROM (SELECT service, ${key}, k, (array_agg(jsonb_build_array(ver, v) ORDER BY ver DESC))[1] AS sv
                            FROM mat_batch,
                                 jsonb_each(CASE WHEN jsonb_typeof(traits) = 'object' THEN traits ELSE '{}' END) AS j(k, v)
                           WHERE included AND ${where} GROUP BY 1, 2, 3) x
                   GROUP BY 1, 2) st USING (service, ${key})
     ON CONFLICT (service, ${key}) DO UPDATE
       SET state = tributary_lww_merge(t.state, EXCLUDED.state),
           first_seen_at = least(t.first_seen_at, EXCLUDED.first_seen_at),
           last_seen_at = greatest(t.last_seen_at, EXCLUDED.last_seen_at)`,
  );
  await projectTraits(client, target, key, where, typed, allRows);
  return r.rowCount ?? 0;
}

async function projectTraits(
  client: pg.PoolClient,
  target: string,
  key: string,
  where: string,
  typed: readonly TypedColumn[],
  allRows: boolean,
): Promise<void> {
  if (typed.length === 0) return;
  const sets = typed
    .map((c) => `${ident(c.column)} = tributary_cell_${c.kind}(t.traits #> ${pathLiteral(c.path)})`)
    .join(', ');
  const touched = allRows
    ? ''
    : ` WHERE (t.service, t.${key}) IN (SELECT service, ${key} FROM mat_batch WHERE included AND ${where})`;
  await client.query(`UPDATE ${target} AS t SET ${sets}${touched}`);
}

/** Links each anonymous id (and each alias's previous id) to its latest user id. */
export async function upsertIdentityLinks(client: pg.PoolClient, schema: string): Promise<number> {
  const r = await client.query(
    `INSERT INTO ${ident(schema)}.identity_links AS l (service, anonymous_id, user_id, version)
     SELECT DISTINCT ON (service, anonymous_id) service, anonymous_id, user_id, ver
       FROM (SELECT service, anonymous_id, user_id, ver FROM mat_batch
              WHERE included AND anonymous_id IS NOT NULL AND user_id IS NOT NULL
             UNION ALL
             SELECT service, previous_id, user_id, ver FROM mat_batch
              WHERE included AND call = 'alias' AND previous_id IS NOT NULL AND user_id IS NOT NULL) x
      ORDER BY service, anonymous_id, ver DESC
     ON CONFLICT (service, anonymous_id) DO UPDATE SET user_id = EXCLUDED.user_id, version = EXCLUDED.version
      WHERE EXCLUDED.version > l.version`,
  );
  return r.rowCount ?? 0;
}

/**
 * Recomputes `daily_counts` for the (service, UTC day) pairs in `touched` (a query giving
 * `service, day`) from `events`: delete, then insert. Returns the rows written.
 */
export async function recountDays(client: pg.PoolClient, schema: string, touched: string): Promise<number> {
  const target = `${ident(schema)}.daily_counts`;
  await client.query(`CREATE TEMP TABLE mat_days ON COMMIT DROP AS ${touched}`);
  await client.query(
    `DELETE FROM ${target} d USING mat_days t WHERE d.service = t.service AND d.day = t.day`,
  );
  const r = await client.query(
    `INSERT INTO ${target} (service, type, day, events, users)
     SELECT e.service, e.type, t.day, count(*), count(DISTINCT coalesce(e.user_id, e.anonymous_id))
       FROM mat_days t
       JOIN events e ON e.service = t.service AND e.occurred_at >= t.day::timestamp AT TIME ZONE 'UTC'
                    AND e.occurred_at < (t.day + 1)::timestamp AT TIME ZONE 'UTC'
      GROUP BY 1, 2, 3`,
  );
  await client.query('DROP TABLE mat_days');
  return r.rowCount ?? 0;
}

/**
 * A rebuild's `daily_counts` (into its shadow schema's empty table), from `mat_batch`: it holds
 * every event the rebuild read, including those of archived months, which `events` no longer
 * has. The same counts as {@link recountDays} over `events` when it read no archive. Returns
 * the rows written.
 */
export async function countBatchDays(client: pg.PoolClient, schema: string): Promise<number> {
  const r = await client.query(
    `INSERT INTO ${ident(schema)}.daily_counts (service, type, day, events, users)
     SELECT service, type, (occurred_at AT TIME ZONE 'UTC')::date, count(*), count(DISTINCT coalesce(user_id, anonymous_id))
       FROM mat_batch WHERE included GROUP BY 1, 2, 3`,
  );
  return r.rowCount ?? 0;
}

/** The days a batch touched. */
export const BATCH_DAYS = `SELECT DISTINCT service, (occurred_at AT TIME ZONE 'UTC')::date AS day FROM mat_batch WHERE included`;

/** Records the days the batch touched, to be recounted by {@link recountDirtyDays}. */
export async function markDirtyDays(client: pg.PoolClient, name: string): Promise<void> {
  await client.query(
    `INSERT INTO mat_dirty_days (materialization, service, day)
     SELECT $1, service, day FROM (${BATCH_DAYS}) d ON CONFLICT DO NOTHING`,
    [name],
  );
}

/** Recounts every day batches touched since the last recount, and forgets them. Returns the days. */
export async function recountDirtyDays(client: pg.PoolClient, name: string, schema: string): Promise<number> {
  const gone = await client.query<{ service: string; day: string }>(
    `DELETE FROM mat_dirty_days WHERE materialization = $1 RETURNING service, day::text`,
    [name],
  );
  if (gone.rowCount === 0) return 0;
  await client.query(
    `CREATE TEMP TABLE mat_dirty ON COMMIT DROP AS SELECT * FROM jsonb_to_recordset('[]') AS x(service text, day date)`,
  );
  await client.query(
    `INSERT INTO mat_dirty SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(service text, day date)`,
    [JSON.stringify(gone.rows)],
  );
  await recountDays(client, schema, 'SELECT service, day FROM mat_dirty');
  await client.query('DROP TABLE mat_dirty');
  return gone.rowCount ?? 0;
}

/** A rebuild recounted every day: nothing is left to recount. */
export async function clearDirtyDays(client: pg.PoolClient, name: string): Promise<void> {
  await client.query('DELETE FROM mat_dirty_days WHERE materialization = $1', [name]);
}

/** Days waiting for their recount. */
export async function dirtyDayCount(pool: pg.Pool, name: string): Promise<number> {
  const r = await pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM mat_dirty_days WHERE materialization = $1',
    [name],
  );
  return r.rows[0]?.n ?? 0;
}
