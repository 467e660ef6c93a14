import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { documentedFetch } from '../helpers/openapi.ts';
import { call, event, type Stack, startStack, waitFor } from '../helpers/stack.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workerEnv: { BATCH_SIZE: '500' } });
});
afterAll(async () => {
  await stack?.close();
});

const count = async () =>
  (await stack.env.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events')).rows[0]?.n ?? 0;

describe('SIGTERM', () => {
  it('a worker finishes and acknowledges the batch in hand, then exits 0', async () => {
    for (let i = 0; i < 50; i++) {
      await call(stack.url, '/v1/events/batch', {
        body: { events: Array.from({ length: 200 }, () => event()) },
      });
    }
    const worker = await stack.addWorker();
    await waitFor(async () => (await count()) > 0, 20_000, 'progress');
    expect(await worker.stop()).toBe(0);
    expect(worker.logs.some((l) => l.msg === 'worker stopped')).toBe(true);
    // Nothing is left pending: every entry it read was stored and acknowledged before exit.
    const buffer = await call(stack.url, '/health/buffer', { key: null });
    expect(buffer.body.pending).toBe(0);
    expect(buffer.body.length + (await count())).toBe(10_000);
  });

  it('the API stops accepting and exits 0', async () => {
    expect((await call(stack.url, '/v1/events', { body: event() })).status).toBe(202);
    expect(await stack.api.stop()).toBe(0);
    await expect(documentedFetch(`${stack.url}/health/live`)).rejects.toThrow();
  });
});
