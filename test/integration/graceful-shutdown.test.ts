import { describe, expect } from 'vitest';
import { stackTest } from '../helpers/fixtures.ts';
import { call, event, type Stack, waitFor } from '../helpers/stack.ts';
import { countRows } from '../helpers/stored-once.ts';

const test = stackTest({ workerEnv: { BATCH_SIZE: '500' } });

const count = async (stack: Stack) => (await countRows(stack.env.pool)).rows;

describe('SIGTERM', () => {
  test('a worker finishes and acknowledges the batch in hand, then exits 0', async ({ stack }) => {
    for (let i = 0; i < 50; i++) {
      await call(stack.url, '/v1/events/batch', {
        body: { events: Array.from({ length: 200 }, () => event()) },
      });
    }
    const worker = await stack.addWorker();
    await waitFor(async () => (await count(stack)) > 0, 20_000, 'progress');
    expect(await worker.stop()).toBe(0);
    expect(worker.logs.some((l) => l.msg === 'worker stopped')).toBe(true);
    // Nothing is left pending: every entry it read was stored and acknowledged before exit.
    const buffer = await call(stack.url, '/health/buffer', { key: null });
    expect(buffer.body.pending).toBe(0);
    expect(buffer.body.length + (await count(stack))).toBe(10_000);
  });

  test('the API stops accepting and exits 0', async ({ stack }) => {
    expect((await call(stack.url, '/v1/events', { body: event() })).status).toBe(202);
    expect(await stack.api.stop()).toBe(0);
    await expect(fetch(`${stack.url}/health/live`)).rejects.toThrow();
  });
});
