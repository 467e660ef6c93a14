import { describe, expect } from 'vitest';
import { privateDatabaseTest } from '../helpers/fixtures.ts';
import { batchLoad } from '../helpers/ingest-load.ts';
import { call } from '../helpers/stack.ts';
import { expectBufferDrained, expectStoredExactlyOnce } from '../helpers/stored-once.ts';
import { sleep, waitFor } from '../helpers/wait.ts';

const OUTAGE_MS = 16_000;

const test = privateDatabaseTest({
  BATCH_SIZE: '1000',
  // A short claim time and few deliveries: if a worker holding a batch through the
  // outage did not keep its entries fresh, the other would reclaim them until they
  // were dead-lettered.
  CLAIM_IDLE_MS: '1000',
  MAX_DELIVERIES: '2',
  BREAKER_FAILURE_THRESHOLD: '3',
  BREAKER_HALF_OPEN_AFTER_MS: '500',
  BREAKER_MAX_HALF_OPEN_AFTER_MS: '4000',
});

describe('PostgreSQL stopped under load', () => {
  test(`keeps accepting for ${OUTAGE_MS / 1000} s, opens the breaker, and stores everything once after`, async ({
    testEnv: t,
  }) => {
    const { postgres, pool, redis, prefix } = t;
    const api = await t.start('serve');
    const workers = [await t.start('work'), await t.start('work')];
    // One client, batches of 100 every 20 ms; a refused batch is counted, not resent.
    const load = batchLoad(api.url, { batchSize: 100, pauseMs: 20 });
    load.start();
    const statusDuringOutage = new Map<number, number>();

    // Durations, not waits: the load runs 2 s before the stop, the outage lasts OUTAGE_MS,
    // and the load runs 2 s more once PostgreSQL is back.
    await sleep(2_000);
    const stoppedAt = Date.now();
    postgres.stop();
    const opened = await Promise.any(
      workers.map((w) => w.waitForLog((l) => l.msg === 'database circuit breaker opened', 15_000)),
    );
    const breakerOpenMs = Date.parse(String(opened.time)) - stoppedAt;
    const health = await waitFor(async () => {
      const res = await call(api.url, '/health/database');
      return res.body.circuitBreaker === 'open' ? res : null;
    });
    expect(health.status).toBe(503);
    // The first of the three triggers: consecutive connection failures.
    expect(opened.trigger).toBe('connection');
    expect(health.body.circuitBreakerTrigger).toBe('connection');
    const ready = await call(api.url, '/health/ready', { key: null });
    expect(ready.status).toBe(200);

    const before = load.acknowledged.size;
    const refusedBefore = [...load.refusals.values()].reduce((a, b) => a + b, 0);
    await sleep(Math.max(0, stoppedAt + OUTAGE_MS - Date.now()));
    const acceptedDuringOutage = load.acknowledged.size - before;
    for (const [status, n] of load.refusals) statusDuringOutage.set(status, n);

    postgres.start();
    const startedAt = Date.now();
    await sleep(2_000);
    await load.stop();

    // Ingest never stopped: every batch sent during the outage was acknowledged.
    expect(acceptedDuringOutage).toBeGreaterThan(5_000);
    expect([...load.refusals.values()].reduce((a, b) => a + b, 0)).toBe(refusedBefore);
    const counts = await expectStoredExactlyOnce(pool, load.acknowledged);
    const drainedMs = Date.now() - startedAt;
    await expectBufferDrained(redis, prefix);
    await waitFor(async () => {
      const res = await call(api.url, '/health/database');
      return res.status === 200 && res.body.circuitBreaker === 'closed';
    });
    console.info(
      `[database-outage] sent ${load.sent.size}, acknowledged ${load.acknowledged.size} ` +
        `(${acceptedDuringOutage} during the ${OUTAGE_MS} ms outage), stored ${counts.rows}, ` +
        `duplicates ${counts.rows - counts.distinct}, breaker opened ${breakerOpenMs} ms after the stop, ` +
        `all stored ${drainedMs} ms after PostgreSQL came back, refusals ${JSON.stringify([...statusDuringOutage])}`,
    );
  });
});
