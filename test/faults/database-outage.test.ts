import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectBufferDrained, expectStoredExactlyOnce, Ledger } from '../helpers/ledger.ts';
import { type PrivateDatabaseEnv, privateDatabaseEnv } from '../helpers/private-database.ts';
import { startTributary } from '../helpers/processes.ts';
import { call, waitFor } from '../helpers/stack.ts';

const OUTAGE_MS = 16_000;

let t: PrivateDatabaseEnv;

beforeAll(async () => {
  t = await privateDatabaseEnv('pgdown', {
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
});

afterAll(async () => {
  await t?.cleanup();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('PostgreSQL stopped under load', () => {
  it(`keeps accepting for ${OUTAGE_MS / 1000} s, opens the breaker, and stores everything once after`, async () => {
    const { env, postgres, db, redis, prefix } = t;
    const api = await startTributary('serve', env);
    const workers = [await startTributary('work', env), await startTributary('work', env)];
    t.processes.push(api, ...workers);
    const ledger = new Ledger();
    let phase: 'before' | 'outage' | 'after' | 'done' = 'before';
    const statusDuringOutage = new Map<number, number>();
    const load = ledger.sendWhile(api.url, 100, () => phase !== 'done', 20);

    await sleep(2_000);
    const stoppedAt = Date.now();
    phase = 'outage';
    postgres.stop();
    const opened = await Promise.any(
      workers.map((w) => w.waitForLog((l) => l.msg === 'database circuit breaker opened', 15_000)),
    );
    const breakerOpenMs = Date.parse(String(opened.time)) - stoppedAt;
    const health = await waitFor(async () => {
      const res = await call(api.url, '/health/database', { key: null });
      return res.body.circuitBreaker === 'open' ? res : null;
    });
    expect(health.status).toBe(503);
    const ready = await call(api.url, '/health/ready', { key: null });
    expect(ready.status).toBe(200);

    const before = ledger.acknowledged.size;
    const refusedBefore = [...ledger.refusals.values()].reduce((a, b) => a + b, 0);
    await sleep(Math.max(0, stoppedAt + OUTAGE_MS - Date.now()));
    const acceptedDuringOutage = ledger.acknowledged.size - before;
    for (const [status, n] of ledger.refusals) statusDuringOutage.set(status, n);

    postgres.start();
    const startedAt = Date.now();
    phase = 'after';
    await sleep(2_000);
    phase = 'done';
    await load;

    // Ingest never stopped: every batch sent during the outage was acknowledged.
    expect(acceptedDuringOutage).toBeGreaterThan(5_000);
    expect([...ledger.refusals.values()].reduce((a, b) => a + b, 0)).toBe(refusedBefore);
    const counts = await expectStoredExactlyOnce(db, ledger.acknowledged);
    const drainedMs = Date.now() - startedAt;
    await expectBufferDrained(redis, prefix);
    await waitFor(async () => {
      const res = await call(api.url, '/health/database', { key: null });
      return res.status === 200 && res.body.circuitBreaker === 'closed';
    });
    console.info(
      `[database-outage] sent ${ledger.sent}, acknowledged ${ledger.acknowledged.size} ` +
        `(${acceptedDuringOutage} during the ${OUTAGE_MS} ms outage), stored ${counts.rows}, ` +
        `duplicates ${counts.rows - counts.distinct}, breaker opened ${breakerOpenMs} ms after the stop, ` +
        `all stored ${drainedMs} ms after PostgreSQL came back, refusals ${JSON.stringify([...statusDuringOutage])}`,
    );
  });
});
