import { statfs } from 'node:fs/promises';
import { describe, expect } from 'vitest';
import { stackTest } from '../helpers/fixtures.ts';
import { call } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

// More free bytes asked of the checkpoint volume than any disk here has: the worker's report
// says `low`, readiness turns `degraded` (still 200) and `/health` shows the space and memory.
const test = stackTest({ workers: 1, workerEnv: { CHECKPOINT_MIN_FREE_BYTES: String(2 ** 52) } });

describe('health reports disk space and memory', () => {
  test('a checkpoint volume under CHECKPOINT_MIN_FREE_BYTES makes readiness degraded; /health shows the free bytes and memory', async ({
    stack,
  }) => {
    const health = await waitFor(async () => {
      const res = await call(stack.url, '/health');
      return res.body.workers?.[0]?.volume ? res.body : null;
    });
    const worker = health.workers[0];
    expect(worker.volume.low).toBe(true);
    // The free bytes are the volume's own, as statfs (df) reads them, give or take what other runs write.
    const fs = await statfs(worker.volume.path);
    expect(Math.abs(worker.volume.freeBytes - fs.bavail * fs.bsize)).toBeLessThan(2 ** 30);
    expect(worker.volume.totalBytes).toBe(fs.blocks * fs.bsize);
    expect(worker.memory.rssBytes).toBeGreaterThan(10 * 2 ** 20);
    expect(worker.memory.heapUsedBytes).toBeGreaterThan(0);
    expect(worker.memory.limitBytes).toBeGreaterThan(worker.memory.rssBytes);
    expect(health.resources.memory.rssBytes).toBeGreaterThan(10 * 2 ** 20);
    expect(health.resources.minFreeBytes).toBe(2 ** 30);
    expect(health.status).toBe('degraded');

    const ready = await call(stack.url, '/health/ready', { key: null });
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'degraded' });

    // The worker gone (its report removed), readiness is ok again.
    await stack.workers[0]?.stop();
    await waitFor(
      async () =>
        (await call(stack.url, '/health/ready', { key: null })).body.status === 'ok' ? true : null,
      20_000,
      'readiness ok again',
    );
  });
});
