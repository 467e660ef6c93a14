import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, BASE_REDIS_URL, deleteKeys } from '../helpers/env.ts';
import { freePort, PrivatePostgres } from '../helpers/private-servers.ts';
import { runTributary, startTributary, type TributaryProcess } from '../helpers/processes.ts';
import { call, event, waitFor } from '../helpers/stack.ts';

let postgres: PrivatePostgres;
const processes: TributaryProcess[] = [];
const prefix = `tributary_test_outage${process.pid}`;
const redis = new Redis(BASE_REDIS_URL);
let env: Record<string, string>;

beforeAll(async () => {
  postgres = new PrivatePostgres(await freePort());
  postgres.start();
  env = {
    DATABASE_URL: postgres.url.replace(/\/postgres$/, '/tributary'),
    REDIS_URL: BASE_REDIS_URL,
    REDIS_PREFIX: prefix,
    ADMIN_API_KEY: ADMIN_KEY,
    PORT: '0',
    HOST: '127.0.0.1',
    // One partition, a short claim time and a single delivery allowed: one worker holds the
    // whole outage batch while the other idles, so unless the holder keeps its entries
    // fresh, the idle one reclaims them and they are dead-lettered.
    STREAM_PARTITIONS: '1',
    CLAIM_IDLE_MS: '1000',
    MAX_DELIVERIES: '1',
    BATCH_SIZE: '1000',
  };
  expect((await runTributary(['migrate'], env)).code).toBe(0);
});

afterAll(async () => {
  await Promise.all(processes.map((p) => p.kill9()));
  postgres?.destroy();
  await deleteKeys(redis, `${prefix}:*`);
  redis.disconnect();
});

describe('PostgreSQL outage', () => {
  it('keeps accepting, holds the backlog, and stores everything once when the database returns', async () => {
    const api = await startTributary('serve', env);
    processes.push(api, await startTributary('work', env), await startTributary('work', env));
    const acknowledged = new Set<string>();
    const send = async () => {
      const res = await call(api.url, '/v1/events/batch', {
        body: { events: Array.from({ length: 100 }, () => event({ userId: `u${Math.random()}` })) },
      });
      expect(res.status).toBe(202);
      for (const id of res.body.ids) acknowledged.add(id);
    };
    for (let i = 0; i < 10; i++) await send();

    postgres.stop();
    await send();
    await new Promise((r) => setTimeout(r, 4_000));
    const outageEnds = Date.now() + 3_000;
    while (Date.now() < outageEnds) {
      await send();
      await new Promise((r) => setTimeout(r, 200));
    }
    const ready = await call(api.url, '/health/ready', { key: null });
    expect(ready.status).toBe(200);
    expect(ready.body.status).toBe('degraded');
    expect((await call(api.url, '/health/database', { key: null })).status).toBe(503);
    postgres.start();

    const db = new pg.Pool({ connectionString: env.DATABASE_URL });
    try {
      await waitFor(
        async () => {
          const r = await db.query('SELECT count(*)::int AS n FROM events');
          return r.rows[0].n === acknowledged.size;
        },
        60_000,
        'all rows',
      );
      const ids = await db.query<{ id: string }>('SELECT id FROM events');
      expect(new Set(ids.rows.map((r) => r.id))).toEqual(acknowledged);
      const buffer = await waitFor(async () => {
        const b = await call(api.url, '/health/buffer', { key: null });
        return b.body.pending === 0 && b.body.length === 0 ? b.body : null;
      });
      expect(buffer.deadLetters).toBe(0);
    } finally {
      await db.end();
    }
  });
});
