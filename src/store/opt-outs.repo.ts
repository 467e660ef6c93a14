import type pg from 'pg';

/*
 * The `opt_outs` table: subjects whose events are answered `skipped` and never stored.
 * Hand-written SQL, moved unchanged from the DSAR routes and the subject registry: the
 * upsert keeps the first opt-out's time (a no-op update, so RETURNING has the row), and the
 * registry reads times as epoch milliseconds, the unit of its pub/sub messages.
 */

/**
 * Records an opt-out (again: the first time is kept), and one for each of `linked` (ids
 * linked to the subject, §12) not opted out yet, marked as the subject's (`via`), so opting
 * the subject back in undoes exactly this. A subject opting out itself takes its row over
 * from any other subject's opt-out that covered it.
 * @returns when the subject opted out, and the linked ids opted out now with their time.
 */
export async function optOut(
  pool: pg.Pool,
  userId: string,
  keyId: string | null,
  linked: readonly string[] = [],
): Promise<{ at: Date; linked: { userId: string; at: Date }[] }> {
  const { rows } = await pool.query<{ at: Date }>(
    `INSERT INTO opt_outs (user_id, key_id) VALUES ($1, $2)
     ON CONFLICT (user_id) DO UPDATE SET via = NULL RETURNING created_at AS at`,
    [userId, keyId],
  );
  const others = linked.filter((id) => id !== userId);
  const added =
    others.length === 0
      ? []
      : (
          await pool.query<{ user_id: string; at: Date }>(
            `INSERT INTO opt_outs (user_id, key_id, via) SELECT unnest($1::text[]), $2, $3
             ON CONFLICT (user_id) DO NOTHING RETURNING user_id, created_at AS at`,
            [others, keyId, userId],
          )
        ).rows;
  return { at: (rows[0] as { at: Date }).at, linked: added.map((r) => ({ userId: r.user_id, at: r.at })) };
}

/**
 * Removes the subject's opt-out and those its opt-out made for linked ids; nothing happens
 * when there is none.
 * @returns the linked ids opted back in with it.
 */
export async function optIn(pool: pg.Pool, userId: string): Promise<string[]> {
  const { rows } = await pool.query<{ user_id: string }>(
    'DELETE FROM opt_outs WHERE user_id = $1 OR via = $1 RETURNING user_id',
    [userId],
  );
  return rows.map((r) => r.user_id).filter((id) => id !== userId);
}

/** Every opt-out, with its time in epoch milliseconds. */
export async function listOptOuts(pool: pg.Pool): Promise<{ userId: string; at: number }[]> {
  const { rows } = await pool.query<{ user_id: string; at: string }>(
    `SELECT user_id, (extract(epoch FROM created_at) * 1000)::float8 AS at FROM opt_outs`,
  );
  return rows.map((r) => ({ userId: r.user_id, at: Number(r.at) }));
}
