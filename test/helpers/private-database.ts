import { Redis } from 'ioredis';
import pg from 'pg';
import { ADMIN_KEY, BASE_REDIS_URL, deleteKeys } from './env.ts';
import { freePort, PrivatePostgres } from './private-servers.ts';
import { runTributary, type TributaryProcess } from './processes.ts';

export interface PrivateDatabaseEnv {
  postgres: PrivatePostgres;
  /** Environment for Tributary processes: the private database, the shared Redis under its own prefix. */
  env: Record<string, string>;
  prefix: string;
  /** Pool on the private database (for counting rows). */
  db: pg.Pool;
  redis: Redis;
  /** Processes to kill -9 at cleanup. */
  processes: TributaryProcess[];
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
  const env = {
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
    async cleanup() {
      await Promise.all(processes.map((p) => p.kill9()));
      await db.end().catch(() => {});
      postgres.destroy();
      await deleteKeys(redis, `${prefix}:*`);
      redis.disconnect();
    },
  };
}
