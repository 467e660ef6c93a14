import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { PrivatePostgres } from './private-servers.ts';
import { runTributary, startTributary, type TributaryProcess } from './processes.ts';

/** Servers the tests use; a run only ever touches its own database and key prefix on them. */
export const BASE_DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const BASE_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const TEST_DB = /^tributary_test_[a-z0-9]+$/;

export const ADMIN_KEY = 'test-admin-key-0123456789abcdef';

export interface TestEnvOptions {
  /**
   * A private PostgreSQL cluster (started) to put the test database on instead of the
   * machine's, for tests that stop the database; the env owns it and destroys it at cleanup.
   */
  postgres?: PrivatePostgres;
  /**
   * One CHECKPOINT_DIR (a temp dir) for every worker of this env, so a worker started after
   * another one died takes its checkpoint over; without it each worker gets its own.
   */
  sharedCheckpointDir?: boolean;
  /** Settings every {@link TestEnv.env} call includes (an `extra` there overrides them). */
  settings?: Record<string, string>;
}

export interface TestEnv {
  name: string;
  databaseUrl: string;
  redisUrl: string;
  prefix: string;
  /** Environment for a Tributary process of this test. */
  env(extra?: Record<string, string>): Record<string, string>;
  redis: Redis;
  pool: pg.Pool;
  /** The private cluster, when the env was made with one. */
  postgres?: PrivatePostgres;
  /** The shared CHECKPOINT_DIR, when the env was made with one. */
  checkpointDir?: string;
  /** Processes started with {@link TestEnv.start}; killed -9 at cleanup. */
  processes: TributaryProcess[];
  /** Runs `tributary migrate` (which creates the database); throws when it fails. */
  migrate(extra?: Record<string, string>): Promise<void>;
  /** Starts a role with this environment; it is killed at cleanup. */
  start(role: string, extra?: Record<string, string>): Promise<TributaryProcess>;
  /** Kills what it started, drops the database and every key under the prefix. */
  cleanup(): Promise<void>;
}

function urlWithDb(base: string, db: string): string {
  const u = new URL(base);
  u.pathname = `/${db}`;
  return u.toString();
}

/** A test env on a private PostgreSQL, with one CHECKPOINT_DIR for all its workers. */
export type PrivateDatabaseEnv = TestEnv & { postgres: PrivatePostgres; checkpointDir: string };

/**
 * A fresh database name and Redis prefix of their own, on the machine's servers (or on a
 * private PostgreSQL); the database is created by `tributary migrate`.
 */
export function createTestEnv(
  options: TestEnvOptions & { postgres: PrivatePostgres; sharedCheckpointDir: true },
): PrivateDatabaseEnv;
export function createTestEnv(options?: TestEnvOptions): TestEnv;
export function createTestEnv(options: TestEnvOptions = {}): TestEnv {
  const name = `tributary_test_${randomBytes(5).toString('hex')}`;
  const databaseUrl = urlWithDb(options.postgres?.url ?? BASE_DATABASE_URL, name);
  const prefix = name;
  const checkpointDir = options.sharedCheckpointDir
    ? mkdtempSync(join(tmpdir(), 'tributary-checkpoint-shared-'))
    : undefined;
  const redis = new Redis(BASE_REDIS_URL, { lazyConnect: false, maxRetriesPerRequest: 1 });
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  pool.on('error', () => {});
  const processes: TributaryProcess[] = [];
  const env = (extra: Record<string, string> = {}) => ({
    DATABASE_URL: databaseUrl,
    REDIS_URL: BASE_REDIS_URL,
    REDIS_PREFIX: prefix,
    ADMIN_API_KEY: ADMIN_KEY,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    // Tests refuse many keys from 127.0.0.1 on purpose (the scope matrix); the throttle's own test sets it low.
    AUTH_FAILURES_PER_MINUTE: '100000',
    ...(checkpointDir ? { CHECKPOINT_DIR: checkpointDir } : {}),
    ...options.settings,
    ...extra,
  });
  return {
    name,
    databaseUrl,
    redisUrl: BASE_REDIS_URL,
    prefix,
    redis,
    pool,
    ...(options.postgres ? { postgres: options.postgres } : {}),
    ...(checkpointDir ? { checkpointDir } : {}),
    processes,
    env,
    async migrate(extra) {
      const migrated = await runTributary(['migrate'], env(extra));
      if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);
    },
    async start(role, extra) {
      const p = await startTributary(role, env(extra));
      processes.push(p);
      return p;
    },
    async cleanup() {
      await Promise.all(processes.map((p) => p.kill9()));
      await pool.end().catch(() => {});
      await deleteKeys(redis, `${prefix}:*`);
      redis.disconnect();
      // A private cluster goes whole (it may be stopped now); on the shared one only this database.
      if (options.postgres) options.postgres.destroy();
      else await dropDatabase(name);
      if (checkpointDir) rmSync(checkpointDir, { recursive: true, force: true });
    },
  };
}

/** Deletes every key matching `pattern` (SCAN, so the server is never blocked). */
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
