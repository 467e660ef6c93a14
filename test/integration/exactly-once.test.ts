import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, event, type Stack, startStack, waitFor } from '../helpers/stack.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workers: 2, env: { BATCH_SIZE: '500' } });
});
afterAll(async () => {
  await stack?.close();
});

describe('exactly once', () => {
  it('stores one row per acknowledged id when 10 % of batches are sent again', async () => {
    const total = 20_000;
    const perBatch = 100;
    const batches: Record<string, unknown>[][] = [];
    for (let i = 0; i < total / perBatch; i++) {
      // No timestamps: a resend lands at another receive time, so only the API's id memory stops a second row.
      batches.push(
        Array.from({ length: perBatch }, (_, j) => event({ userId: `u${(i * perBatch + j) % 997}` })),
      );
    }
    const acknowledged = new Set<string>();
    let duplicates = 0;
    const send = async (events: Record<string, unknown>[]) => {
      const res = await call(stack.url, '/v1/events/batch', { body: { events } });
      expect(res.status).toBe(202);
      for (const id of res.body.ids) acknowledged.add(id);
      duplicates += res.body.duplicates;
    };
    // 8 requests in flight; every tenth batch is re-sent right after it was acknowledged.
    for (let i = 0; i < batches.length; i += 8) {
      const group = batches.slice(i, i + 8);
      await Promise.all(group.map((b) => send(b)));
      await Promise.all(group.filter((_, k) => (i + k) % 10 === 0).map((b) => send(b)));
    }
    expect(acknowledged.size).toBe(total);
    expect(duplicates).toBe((total / perBatch / 10) * perBatch);

    await waitFor(
      async () => {
        const r = await stack.env.pool.query('SELECT count(*)::int AS n FROM events');
        return r.rows[0].n >= total;
      },
      60_000,
      'all rows',
    );
    const rows = await stack.env.pool.query<{ n: number; distinct_ids: number }>(
      'SELECT count(*)::int AS n, count(DISTINCT id)::int AS distinct_ids FROM events',
    );
    expect(rows.rows[0]).toEqual({ n: total, distinct_ids: total });
    const ids = await stack.env.pool.query<{ id: string }>('SELECT id FROM events');
    expect(new Set(ids.rows.map((r) => r.id))).toEqual(acknowledged);

    // The buffer is drained: nothing pending, nothing left in the streams.
    await waitFor(async () => {
      const buffer = await call(stack.url, '/health/buffer');
      return buffer.body.length === 0 && buffer.body.pending === 0;
    });
  });
});
