import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';

/** Servers the tests use; a run only ever touches its own database and key prefix on them. */
export const BASE_DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const BASE_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const TEST_DB = /^tributary_test_[a-z0-9]+$/;

export const ADMIN_KEY = 'test-admin-key-0123456789abcdef';

export interface TestEnv {
  name: string;
  databaseUrl: string;
  redisUrl: string;
  prefix: string;
  /** Environment for a Tributary process of this test. */
  env(extra?: Record<string, string>): Record<string, string>;
  redis: Redis;
  pool: pg.Pool;
  /** Drops the database and every key under the prefix. */
  cleanup(): Promise<void>;
}

function urlWithDb(base: string, db: string): string {
  const u = new URL(base);
  u.pathname = `/${db}`;
  return u.toString();
}

/** A fresh database name and Redis prefix; the database is created by `tributary migrate`. */
export function createTestEnv(): TestEnv {
  const name = `tributary_test_${randomBytes(5).toString('hex')}`;
  const databaseUrl = urlWithDb(BASE_DATABASE_URL, name);
  const prefix = name;
  const redis = new Redis(BASE_REDIS_URL, { lazyConnect: false, maxRetriesPerRequest: 1 });
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  pool.on('error', () => {});
  return {
    name,
    databaseUrl,
    redisUrl: BASE_REDIS_URL,
    prefix,
    redis,
    pool,
    env: (extra = {}) => ({
      DATABASE_URL: databaseUrl,
      REDIS_URL: BASE_REDIS_URL,
      REDIS_PREFIX: prefix,
      ADMIN_API_KEY: ADMIN_KEY,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      ...extra,
    }),
    async cleanup() {
      await pool.end().catch(() => {});
      await deleteKeys(redis, `${prefix}:*`);
      redis.disconnect();
      await dropDatabase(name);
    },
  };
}

export async function deleteKeys(redis: Redis, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

/** Drops a test database; refuses any name that is not a test name. */
export async function dropDatabase(name: string): Promise<void> {
  if (!TEST_DB.test(name)) throw new Error(`refusing to drop "${name}": not a test database`);
  const client = new pg.Client({ connectionString: urlWithDb(BASE_DATABASE_URL, 'postgres') });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}
