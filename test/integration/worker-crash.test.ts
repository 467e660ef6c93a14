import { describe, expect } from 'vitest';
import { stackTest } from '../helpers/fixtures.ts';
import { call, event, type Stack, waitFor } from '../helpers/stack.ts';
import { countRows } from '../helpers/stored-once.ts';

// Small batches and a short claim time, so a crash happens mid-stream and recovery is quick.
const test = stackTest({ workerEnv: { BATCH_SIZE: '200', CLAIM_IDLE_MS: '1000' } });

const count = async (stack: Stack) => (await countRows(stack.env.pool)).rows;

describe('worker crash', () => {
  test('loses nothing and doubles nothing when workers are killed -9 mid-batch', async ({ stack }) => {
    const acknowledged = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const res = await call(stack.url, '/v1/events/batch', {
        body: { events: Array.from({ length: 200 }, () => event({ userId: `u${i}` })) },
      });
      for (const id of res.body.ids) acknowledged.add(id);
    }
    expect(acknowledged.size).toBe(20_000);

    // Kill workers while they write, three times, each after it has made some progress.
    for (let round = 0; round < 3; round++) {
      const before = await count(stack);
      const worker = await stack.addWorker();
      await waitFor(async () => (await count(stack)) > before, 30_000, 'progress');
      await worker.kill9();
    }
    const stored = await count(stack);
    expect(stored).toBeLessThan(acknowledged.size);
    // The dead workers held entries they had read but not acknowledged.
    const [held] = (await stack.env.redis.xpending(`${stack.env.prefix}:events:{0}`, 'writers')) as [number];
    const others = await Promise.all(
      [1, 2, 3, 4, 5, 6, 7].map(async (p) => {
        const [n] = (await stack.env.redis.xpending(`${stack.env.prefix}:events:{${p}}`, 'writers')) as [
          number,
        ];
        return Number(n);
      }),
    );
    expect(Number(held) + others.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);

    // A fresh worker takes over what the dead ones held (XAUTOCLAIM) and the rest.
    await stack.addWorker();
    await waitFor(async () => (await count(stack)) === acknowledged.size, 60_000, 'all rows');
    const pending = await waitFor(async () => {
      const b = await call(stack.url, '/health/buffer');
      return b.body.pending === 0 && b.body.length === 0 ? b.body : null;
    });
    expect(pending.deadLetters).toBe(0);
    const ids = await stack.env.pool.query<{ id: string }>('SELECT id FROM events');
    expect(ids.rows.length).toBe(acknowledged.size);
    expect(new Set(ids.rows.map((r) => r.id))).toEqual(acknowledged);
  });

  test('reclaims entries a dead consumer held even when no new event arrives', async ({ stack }) => {
    // No worker runs while a consumer reads every new entry and vanishes.
    for (const w of stack.workers) await w.kill9();
    const res = await call(stack.url, '/v1/events/batch', {
      body: { events: Array.from({ length: 300 }, () => event({ userId: 'idle' })) },
    });
    expect(res.body.accepted).toBe(300);
    const { redis, prefix, pool } = stack.env;
    let held = 0;
    for (let p = 0; p < 8; p++) {
      const key = `${prefix}:events:{${p}}`;
      await redis.xgroup('CREATE', key, 'writers', '0', 'MKSTREAM').catch(() => {});
      const got = (await redis.xreadgroup(
        'GROUP',
        'writers',
        'ghost',
        'COUNT',
        10_000,
        'STREAMS',
        key,
        '>',
      )) as [string, unknown[]][] | null;
      held += got?.[0]?.[1].length ?? 0;
    }
    expect(held).toBe(300);
    // A worker that starts at once finds nothing to claim yet and nothing new to read; it must
    // still come back for the ghost's entries once they have been idle for CLAIM_IDLE_MS.
    await stack.addWorker();
    const stored = async () =>
      (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM events WHERE user_id = 'idle'"))
        .rows[0]?.n;
    await waitFor(async () => (await stored()) === 300, 30_000, 'reclaimed rows');
    const buffer = await waitFor(async () => {
      const b = await call(stack.url, '/health/buffer');
      return b.body.pending === 0 ? b.body : null;
    });
    expect(buffer.deadLetters).toBe(0);
  });
});
