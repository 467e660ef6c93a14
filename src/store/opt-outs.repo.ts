import type pg from 'pg';

/*
 * The `opt_outs` table: subjects whose events are answered `skipped` and never stored.
 * Hand-written SQL, moved unchanged from the DSAR routes and the subject registry: the
 * upsert keeps the first opt-out's time (a no-op update, so RETURNING has the row), and the
 * registry reads times as epoch milliseconds, the unit of its pub/sub messages.
 */

/**
 * Records an opt-out (again: the first time is kept).
 * @returns when the subject opted out.
 */
export async function optOut(pool: pg.Pool, userId: string, keyId: string | null): Promise<Date> {
  const { rows } = await pool.query<{ at: Date }>(
    `INSERT INTO opt_outs (user_id, key_id) VALUES ($1, $2)
     ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id RETURNING created_at AS at`,
    [userId, keyId],
  );
  return (rows[0] as { at: Date }).at;
}

/** Removes an opt-out; nothing happens when there is none. */
export async function optIn(pool: pg.Pool, userId: string): Promise<void> {
  await pool.query('DELETE FROM opt_outs WHERE user_id = $1', [userId]);
}

/** Every opt-out, with its time in epoch milliseconds. */
export async function listOptOuts(pool: pg.Pool): Promise<{ userId: string; at: number }[]> {
  const { rows } = await pool.query<{ user_id: string; at: string }>(
    `SELECT user_id, (extract(epoch FROM created_at) * 1000)::float8 AS at FROM opt_outs`,
  );
  return rows.map((r) => ({ userId: r.user_id, at: Number(r.at) }));
}
