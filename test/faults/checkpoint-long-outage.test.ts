import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { FAST_BREAKER, ingestWithDatabaseDown, privateDatabaseTest } from '../helpers/fixtures.ts';
import { call, waitFor } from '../helpers/stack.ts';
import { expectBufferDrained, expectStoredExactlyOnce } from '../helpers/stored-once.ts';

const SPILL_THRESHOLD = 2_000;
const EVENTS = 30_000;

// One worker at a time here: it takes the first directory under CHECKPOINT_DIR.
const workerDir = (checkpointDir: string) => join(checkpointDir, 'worker-0');
const segments = (checkpointDir: string) =>
  readdirSync(workerDir(checkpointDir)).filter((n) => n.startsWith('segment-'));

const test = privateDatabaseTest({
  CHECKPOINT_SPILL_THRESHOLD: String(SPILL_THRESHOLD),
  // Small segments (one batch each), so replay spans many segments and a kill lands mid-way.
  CHECKPOINT_SEGMENT_BYTES: '4096',
  BATCH_SIZE: '200',
  CLAIM_IDLE_MS: '2000',
  ...FAST_BREAKER,
});

describe('long PostgreSQL outage', () => {
  test('spills past CHECKPOINT_SPILL_THRESHOLD to the checkpoint, survives kill -9 during replay, stores all once', async ({
    testEnv: t,
  }) => {
    const { postgres, pool, redis, prefix, checkpointDir } = t;
    const { api, worker, load } = await ingestWithDatabaseDown(t, {
      senders: 2,
      batchSize: 500,
      limit: EVENTS,
    });
    expect(load.acknowledged.size).toBe(EVENTS);
    expect(load.refusals.size).toBe(0);

    // The worker moves the backlog above the threshold to disk and acknowledges it.
    const spilled = await waitFor(
      async () => {
        const res = await call(api.url, '/health/database');
        const buffer = await call(api.url, '/health/buffer');
        const onDisk = res.body.checkpoint?.events ?? 0;
        // Worker status is refreshed every 2 s, so wait for it to catch up with the buffer.
        const settled = buffer.body.length <= SPILL_THRESHOLD + 200 && onDisk + buffer.body.length >= EVENTS;
        return settled ? { onDisk, res, buffer } : null;
      },
      60_000,
      'backlog spilled to the checkpoint',
    );
    expect(spilled.res.status).toBe(503);
    expect(spilled.res.body.circuitBreaker).toBe('open');
    expect(spilled.onDisk).toBeGreaterThanOrEqual(EVENTS - SPILL_THRESHOLD - 200);
    const segmentsOnDisk = segments(checkpointDir).length;

    // PostgreSQL returns; kill -9 the worker as soon as replay is under way.
    const backAt = Date.now();
    postgres.start();
    await worker.waitForLog((l) => l.msg === 'checkpoint segment replayed', 30_000);
    await worker.kill9();
    const leftAfterKill = segments(checkpointDir).length;
    expect(leftAfterKill).toBeGreaterThan(0);
    expect(leftAfterKill).toBeLessThan(segmentsOnDisk);

    // A new worker on the same directory finishes the replay and the Redis backlog.
    const _successor = await t.start('work');
    const counts = await expectStoredExactlyOnce(pool, load.acknowledged);
    const drainedMs = Date.now() - backAt;
    await expectBufferDrained(redis, prefix);
    expect(segments(checkpointDir)).toEqual([]);
    expect(readdirSync(join(workerDir(checkpointDir), 'quarantine'))).toEqual([]);
    const health = await waitFor(async () => {
      const res = await call(api.url, '/health/database');
      return res.status === 200 && res.body.workers?.length === 1 ? res : null;
    });
    expect(health.body.checkpoint).toMatchObject({ events: 0, segments: 0, failed: [] });
    console.info(
      `[checkpoint-long-outage] sent ${load.sent.size}, acknowledged ${load.acknowledged.size}, ` +
        `checkpointed ${spilled.onDisk} in ${segmentsOnDisk} segments, ${leftAfterKill} left at the kill, ` +
        `stored ${counts.rows}, duplicates ${counts.rows - counts.distinct}, all stored ${drainedMs} ms after PostgreSQL returned`,
    );
  });
});
