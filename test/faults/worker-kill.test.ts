import { describe, expect } from 'vitest';
import { stackTest } from '../helpers/fixtures.ts';
import { batchLoad } from '../helpers/ingest-load.ts';
import type { TributaryProcess } from '../helpers/processes.ts';
import { expectBufferDrained, expectStoredExactlyOnce } from '../helpers/stored-once.ts';
import { sleep } from '../helpers/wait.ts';

const EVENTS = 50_000;
const BATCH = 250;

// Small batches and a short claim time, so kills land mid-batch and recovery is quick.
const test = stackTest({ workers: 2, workerEnv: { BATCH_SIZE: '500', CLAIM_IDLE_MS: '1000' } });

describe('kill -9 of workers under load', () => {
  test(`stores each of ${EVENTS} acknowledged events exactly once while a worker is killed every ~2 s`, async ({
    stack,
  }) => {
    // Two clients, paced so the load lasts long enough for several kills.
    const load = batchLoad(stack.url, { senders: 2, batchSize: BATCH, limit: EVENTS, pauseMs: 50 });
    const started = Date.now();
    let loading = true;
    const loaded = load.run().then(() => {
      loading = false;
    });

    let kills = 0;
    const alive: TributaryProcess[] = [...stack.workers];
    while (loading || kills < 5) {
      // A duration, not a wait: the kills are spread over the load at random.
      await sleep(1_500 + Math.random() * 1_000);
      const victim = alive.splice(Math.floor(Math.random() * alive.length), 1)[0];
      await victim?.kill9();
      kills++;
      alive.push(await stack.addWorker());
    }
    await loaded;
    const loadMs = Date.now() - started;

    expect(load.acknowledged.size).toBe(EVENTS);
    const counts = await expectStoredExactlyOnce(stack.env.pool, load.acknowledged);
    await expectBufferDrained(stack.env.redis, stack.env.prefix);
    console.info(
      `[worker-kill] sent ${load.sent.size}, acknowledged ${load.acknowledged.size}, stored ${counts.rows}, ` +
        `duplicates ${counts.rows - counts.distinct}, kills ${kills}, load ${loadMs} ms, ` +
        `all stored after ${Date.now() - started} ms`,
    );
    expect(kills).toBeGreaterThanOrEqual(5);
  });
});
