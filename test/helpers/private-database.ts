import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { ADMIN_KEY, BASE_REDIS_URL, deleteKeys } from './env.ts';
import { freePort, PrivatePostgres } from './private-servers.ts';
import { runTributary, startTributary, type TributaryProcess } from './processes.ts';

/** A breaker that opens after two failures and probes every 0.2–1 s, so outages show quickly. */
export const FAST_BREAKER = {
  BREAKER_FAILURE_THRESHOLD: '2',
  BREAKER_HALF_OPEN_AFTER_MS: '200',
  BREAKER_MAX_HALF_OPEN_AFTER_MS: '1000',
};

export interface PrivateDatabaseEnv {
  postgres: PrivatePostgres;
  /** Environment for Tributary processes: the private database, the shared Redis under its own prefix. */
  env: Record<string, string>;
  prefix: string;
  /** Pool on the private database (for counting rows). */
  db: pg.Pool;
  redis: Redis;
  /** CHECKPOINT_DIR of every worker started with this environment (a temp dir). */
  checkpointDir: string;
  /** Processes to kill -9 at cleanup. */
  processes: TributaryProcess[];
  /** Starts a role with this environment; it is killed at cleanup. */
  start(role: string): Promise<TributaryProcess>;
  cleanup(): Promise<void>;
}

/**
 * A private, migrated PostgreSQL cluster that the test may stop and start, plus the
 * machine's Redis under a prefix of its own; for tests that take the database away.
 */
export async function privateDatabaseEnv(
  name: string,
  extra: Record<string, string> = {},
): Promise<PrivateDatabaseEnv> {
  const postgres = new PrivatePostgres(await freePort());
  postgres.start();
  const prefix = `tributary_test_${name}${process.pid}`;
  const checkpointDir = mkdtempSync(join(tmpdir(), `tributary-${name}-checkpoint-`));
  const env = {
    CHECKPOINT_DIR: checkpointDir,
    DATABASE_URL: postgres.url.replace(/\/postgres$/, '/tributary'),
    REDIS_URL: BASE_REDIS_URL,
    REDIS_PREFIX: prefix,
    ADMIN_API_KEY: ADMIN_KEY,
    PORT: '0',
    HOST: '127.0.0.1',
    ...extra,
  };
  const migrated = await runTributary(['migrate'], env);
  if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);
  const db = new pg.Pool({ connectionString: env.DATABASE_URL });
  db.on('error', () => {});
  const redis = new Redis(BASE_REDIS_URL);
  const processes: TributaryProcess[] = [];
  return {
    postgres,
    env,
    prefix,
    db,
    redis,
    processes,
    checkpointDir,
    async start(role) {
      const p = await startTributary(role, env);
      processes.push(p);
      return p;
    },
    async cleanup() {
      await Promise.all(processes.map((p) => p.kill9()));
      await db.end().catch(() => {});
      postgres.destroy();
      await deleteKeys(redis, `${prefix}:*`);
      redis.disconnect();
      rmSync(checkpointDir, { recursive: true, force: true });
    },
  };
}
