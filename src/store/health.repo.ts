import type pg from 'pg';

/** One round trip to PostgreSQL (`SELECT 1`): resolves when a pooled connection answers. */
export async function ping(pool: pg.Pool): Promise<void> {
  await pool.query('SELECT 1');
}
