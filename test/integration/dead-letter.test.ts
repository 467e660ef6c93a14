import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, event, type Stack, startStack, unstorableEntry, waitFor } from '../helpers/stack.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workers: 1, env: { STREAM_PARTITIONS: '2' } });
});
afterAll(async () => {
  await stack?.close();
});

const stored = async (ids: string[]) =>
  (await stack.env.pool.query('SELECT id FROM events WHERE id = ANY($1::uuid[])', [ids])).rowCount;

describe('poison entries', () => {
  it('dead-letters an entry PostgreSQL refuses; the events around it still arrive; replay returns it', async () => {
    const stream = `${stack.env.prefix}:events:{0}`;
    const before = Array.from({ length: 20 }, () => event());
    await call(stack.url, '/v1/events/batch', { body: { events: before } });
    // Written straight into the buffer, as a corrupted or foreign producer would: a date PostgreSQL refuses.
    const poison = unstorableEntry();
    const malformed = '{"id": "truncated';
    await stack.env.redis.xadd(stream, '*', 'v', '1', 'e', poison, 'tp', '');
    await stack.env.redis.xadd(stream, '*', 'v', '1', 'e', malformed, 'tp', '');
    await stack.env.redis.xadd(stream, '*', 'v', '9', 'e', '{}', 'tp', '');
    const after = Array.from({ length: 20 }, () => event());
    await call(stack.url, '/v1/events/batch', { body: { events: after } });

    const ids = [...before, ...after].map((e) => String(e.id));
    await waitFor(async () => (await stored(ids)) === 40, 20_000, 'good rows');
    const health = await waitFor(async () => {
      const b = await call(stack.url, '/health/buffer');
      return b.body.deadLetters === 3 && b.body.pending === 0 ? b.body : null;
    });
    expect(health.length).toBe(0);

    const dead = await stack.env.redis.xrange(`${stack.env.prefix}:dead`, '-', '+');
    const errors = dead.map(([, f]) => f[f.indexOf('error') + 1]);
    expect(errors.some((e) => e?.includes('22007') || e?.includes('invalid input syntax'))).toBe(true);
    expect(errors.some((e) => e?.includes('malformed entry'))).toBe(true);

    const metrics = await call(stack.url, '/metrics');
    expect(metrics.status).toBe(200);

    // Replay puts them back; they fail again and return to the dead letters, never into the table.
    const replay = await call(stack.url, '/v1/admin/dead-letter/replay', { method: 'POST' });
    expect(replay.status).toBe(200);
    expect(replay.body).toEqual({ replayed: 3 });
    await waitFor(async () => {
      const b = await call(stack.url, '/health/buffer');
      return b.body.deadLetters === 3 && b.body.pending === 0 && b.body.length === 0;
    });
    const rows = await stack.env.pool.query('SELECT count(*)::int AS n FROM events');
    expect(rows.rows[0].n).toBe(40);
  });

  it('replays a dead letter that can now be stored', async () => {
    const fine = event();
    const json = JSON.stringify({
      ...fine,
      timestamp: new Date().toISOString(),
      receivedAt: new Date().toISOString(),
    });
    const dead = `${stack.env.prefix}:dead`;
    const n = await stack.env.redis.xlen(dead);
    await stack.env.redis.xadd(
      dead,
      '*',
      'stream',
      `${stack.env.prefix}:events:{1}`,
      'v',
      '1',
      'e',
      json,
      'tp',
      '',
      'error',
      'test',
    );
    const replay = await call(stack.url, '/v1/admin/dead-letter/replay?limit=1000', { method: 'POST' });
    expect(replay.body.replayed).toBe(n + 1);
    await waitFor(async () => (await stored([String(fine.id)])) === 1, 20_000, 'replayed row');
    expect(
      (await call(stack.url, '/v1/admin/dead-letter/replay', { method: 'POST', key: null })).status,
    ).toBe(401);
  });
});
