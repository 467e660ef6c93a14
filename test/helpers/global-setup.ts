import { Redis } from 'ioredis';
import pg from 'pg';
import { BASE_DATABASE_URL, BASE_REDIS_URL } from './env.ts';

/** Fails fast, with a useful message, when the servers the integration tests need are not there. */
export async function setup(): Promise<void> {
  const redis = new Redis(BASE_REDIS_URL, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    throw new Error(`integration tests need Redis at ${BASE_REDIS_URL} (run them with ops/local): ${err}`);
  } finally {
    redis.disconnect();
  }
  const client = new pg.Client({ connectionString: BASE_DATABASE_URL });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    throw new Error(
      `integration tests need PostgreSQL at ${BASE_DATABASE_URL} (run them with ops/local): ${err}`,
    );
  } finally {
    await client.end().catch(() => {});
  }
}
