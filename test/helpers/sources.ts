import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { ADMIN_KEY, BASE_DATABASE_URL, dropDatabase } from './env.ts';
import { call, type Stack } from './stack.ts';

/** METADATA_ENCRYPTION_KEYS for the source tests: sources keep their secrets encrypted with it. */
export const SOURCE_KEYS = { METADATA_ENCRYPTION_KEYS: `t1:${randomBytes(32).toString('base64')}` };

/** A source database of its own (a test database name, so the guard lets it be dropped), with a pool on it. */
export interface SourceDatabase {
  name: string;
  /** Its URL with a password in it (trust auth ignores it): the secret that must never show. */
  url: string;
  password: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

export async function createSourceDatabase(): Promise<SourceDatabase> {
  const name = `tributary_test_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: BASE_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const password = `pw-${randomBytes(9).toString('hex')}`;
  const u = new URL(BASE_DATABASE_URL);
  u.pathname = `/${name}`;
  u.password = password;
  const pool = new pg.Pool({ connectionString: u.toString(), max: 3 });
  pool.on('error', () => {});
  return {
    name,
    url: u.toString(),
    password,
    pool,
    async drop() {
      await pool.end().catch(() => {});
      await dropDatabase(name);
    },
  };
}

/** `POST /v1/admin/sources` with the admin key. */
export const createSourceCall = (stack: Stack, body: unknown) =>
  call(stack.url, '/v1/admin/sources', { method: 'POST', body, key: ADMIN_KEY });

/** `GET /v1/admin/sources/:id`'s body. */
export async function sourceState(stack: Stack, id: string): Promise<Record<string, unknown>> {
  const res = await call(stack.url, `/v1/admin/sources/${id}`, { key: ADMIN_KEY });
  if (res.status !== 200) throw new Error(`GET source ${id}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as Record<string, unknown>;
}

/** Rows stored for a source's events, and how many distinct ids. */
export async function storedOf(stack: Stack, sourceId: string): Promise<{ rows: number; ids: number }> {
  const { rows } = await stack.env.pool.query<{ rows: number; ids: number }>(
    `SELECT count(*)::int AS rows, count(DISTINCT id)::int AS ids FROM events WHERE key_id = $1`,
    [`source:${sourceId}`],
  );
  return rows[0] as { rows: number; ids: number };
}
