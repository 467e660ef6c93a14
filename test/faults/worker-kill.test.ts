import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectBufferDrained, expectStoredExactlyOnce, Ledger } from '../helpers/ledger.ts';
import type { TributaryProcess } from '../helpers/processes.ts';
import { type Stack, startStack } from '../helpers/stack.ts';

const EVENTS = 50_000;
const BATCH = 250;

let stack: Stack;
beforeAll(async () => {
  // Small batches and a short claim time, so kills land mid-batch and recovery is quick.
  stack = await startStack({ workers: 2, workerEnv: { BATCH_SIZE: '500', CLAIM_IDLE_MS: '1000' } });
});
afterAll(async () => {
  await stack?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('kill -9 of workers under load', () => {
  it(`stores each of ${EVENTS} acknowledged events exactly once while a worker is killed every ~2 s`, async () => {
    const ledger = new Ledger();
    const started = Date.now();
    let loading = true;
    const load = (async () => {
      // Two clients, paced so the load lasts long enough for several kills.
      await Promise.all([0, 1].map(() => ledger.sendWhile(stack.url, BATCH, () => ledger.sent < EVENTS, 50)));
      loading = false;
    })();

    let kills = 0;
    const alive: TributaryProcess[] = [...stack.workers];
    while (loading || kills < 5) {
      await sleep(1_500 + Math.random() * 1_000);
      const victim = alive.splice(Math.floor(Math.random() * alive.length), 1)[0];
      await victim?.kill9();
      kills++;
      alive.push(await stack.addWorker());
    }
    await load;
    const loadMs = Date.now() - started;

    expect(ledger.acknowledged.size).toBe(EVENTS);
    const counts = await expectStoredExactlyOnce(stack.env.pool, ledger.acknowledged);
    await expectBufferDrained(stack.env.redis, stack.env.prefix);
    console.info(
      `[worker-kill] sent ${ledger.sent}, acknowledged ${ledger.acknowledged.size}, stored ${counts.rows}, ` +
        `duplicates ${counts.rows - counts.distinct}, kills ${kills}, load ${loadMs} ms, ` +
        `all stored after ${Date.now() - started} ms`,
    );
    expect(kills).toBeGreaterThanOrEqual(5);
  });
});
