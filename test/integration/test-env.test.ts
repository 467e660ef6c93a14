import { Redis } from 'ioredis';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { BASE_DATABASE_URL, BASE_REDIS_URL, createTestEnv, dropDatabase } from '../helpers/env.ts';

/** The test helpers' own promise: a test cleans up after itself and never drops anything else. */
describe('test environments (createTestEnv)', () => {
  it('refuses to drop a database whose name is not a test name', async () => {
    // Names that exist nowhere (or cannot be dropped), so that a missing guard fails here
    // without dropping anything.
    for (const name of ['postgres', 'bench_dsar_1', 'tributary_test_x"; DROP DATABASE postgres']) {
      await expect(dropDatabase(name), name).rejects.toThrow(/not a test database/);
    }
  });

  it('cleanup kills what it started, drops its database and deletes its keys', async () => {
    const env = createTestEnv();
    expect(env.name).toMatch(/^tributary_test_[a-z0-9]+$/);
    await env.migrate();
    const api = await env.start('serve');
    await env.redis.set(`${env.prefix}:probe`, '1');
    await env.cleanup();

    expect(api.child.exitCode !== null || api.child.signalCode !== null).toBe(true);
    const admin = new pg.Client({ connectionString: BASE_DATABASE_URL });
    await admin.connect();
    const { rows } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [env.name]);
    await admin.end();
    expect(rows).toEqual([]);
    const redis = new Redis(BASE_REDIS_URL);
    const keys = await redis.keys(`${env.prefix}:*`);
    redis.disconnect();
    expect(keys).toEqual([]);
  });
});
