import { fileURLToPath } from 'node:url';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';
import { ensurePartitions, requiredPartitions } from './partitions.ts';

const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../drizzle', import.meta.url));
/** Serialises migrations across processes starting together (pg_advisory_lock key). */
const MIGRATION_LOCK = 0x7472_6963;

/** Database name from a connection URL. */
export function databaseName(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  if (!name) throw new Error('DATABASE_URL names no database');
  return name;
}

/** Creates the database named in `url` when it does not exist. Returns true when it was created. */
export async function ensureDatabase(url: string): Promise<boolean> {
  const name = databaseName(url);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString(), connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount) return false;
    try {
      await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      return true;
    } catch (err) {
      // Another process created it between the check and the CREATE.
      if ((err as { code?: string }).code === '42P04' || (err as { code?: string }).code === '23505') {
        return false;
      }
      throw err;
    }
  } finally {
    await client.end();
  }
}

export interface MigrateResult {
  databaseCreated: boolean;
  partitionsCreated: string[];
}

/**
 * Creates the database when absent, applies pending migrations and creates the monthly
 * partitions of the accepted window. Idempotent and safe to run from several processes.
 * `url` must reach PostgreSQL directly (DATABASE_MIGRATION_URL when DATABASE_URL goes through
 * PgBouncer): the lock that serialises migrations is a session lock, held across the
 * migrator's statements, and `ensureDatabase` connects to the `postgres` database.
 */
export async function migrateDatabase(
  url: string,
  maxRetentionDays: number,
  /** Another folder of migrations (tests migrate to an earlier schema with a copy of part of it). */
  migrationsFolder = MIGRATIONS_FOLDER,
): Promise<MigrateResult> {
  const databaseCreated = await ensureDatabase(url);
  const pool = new pg.Pool({ connectionString: url, max: 2, connectionTimeoutMillis: 5_000 });
  try {
    const client = await pool.connect();
    try {
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      try {
        await migrate(drizzle(client), { migrationsFolder });
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
      }
    } finally {
      client.release();
    }
    const partitionsCreated = await ensurePartitions(pool, requiredPartitions(new Date(), maxRetentionDays));
    return { databaseCreated, partitionsCreated };
  } finally {
    await pool.end();
  }
}
