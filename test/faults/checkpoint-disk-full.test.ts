import { execFileSync, spawnSync } from 'node:child_process';
import { describe, expect } from 'vitest';
import { FAST_BREAKER, ingestWithDatabaseDown, privateDatabaseTest } from '../helpers/fixtures.ts';
import { call, waitFor } from '../helpers/stack.ts';
import { expectBufferDrained, expectStoredExactlyOnce } from '../helpers/stored-once.ts';

const EVENTS = 4_000;

const test = privateDatabaseTest({
  CHECKPOINT_SPILL_THRESHOLD: '0',
  BATCH_SIZE: '100',
  CLAIM_IDLE_MS: '1000',
  MAX_DELIVERIES: '3',
  ...FAST_BREAKER,
}).extend('tmpfs', { scope: 'file', auto: true }, async ({ testEnv }, { onCleanup }) => {
  // A 128 KiB tmpfs as CHECKPOINT_DIR: the checkpoint runs out of space after a few hundred events.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', testEnv.checkpointDir]);
  onCleanup(async () => {
    // The workers hold files in it: kill them before it can be unmounted.
    await Promise.all(testEnv.processes.map((p) => p.kill9()));
    spawnSync('umount', [testEnv.checkpointDir]);
  });
  return testEnv.checkpointDir;
});

describe('checkpoint on a full disk', () => {
  test('stops checkpointing, reports it, keeps the rest in Redis, and loses nothing', async ({
    testEnv: t,
  }) => {
    const { postgres, pool, redis, prefix } = t;
    const { api, worker, load } = await ingestWithDatabaseDown(t, { batchSize: 200, limit: EVENTS });
    expect(load.acknowledged.size).toBe(EVENTS);

    const failedLog = await worker.waitForLog((l) => String(l.msg).startsWith('checkpoint write failed'));
    expect(String(failedLog.err)).toMatch(/ENOSPC/);
    const health = await waitFor(async () => {
      const res = await call(api.url, '/health/database');
      return res.body.status === 'checkpoint_failed' ? res : null;
    });
    expect(health.status).toBe(503);
    expect(health.body.checkpoint.failed[0]).toMatch(/ENOSPC/);
    // Ingest is unaffected: Redis holds what the checkpoint could not take.
    expect((await load.sendBatch(10)) === 202).toBe(true);
    const buffered = (await call(api.url, '/health/buffer')).body.length;
    expect(buffered).toBeGreaterThan(0);

    postgres.start();
    const counts = await expectStoredExactlyOnce(pool, load.acknowledged);
    await expectBufferDrained(redis, prefix);
    // The failure stays reported until an operator restarts the worker (it never retries an fsync).
    const after = await call(api.url, '/health/database');
    expect(after.body.status).toBe('checkpoint_failed');
    expect(after.body.checkpoint.events).toBe(0);
    console.info(
      `[checkpoint-disk-full] acknowledged ${load.acknowledged.size}, ${health.body.checkpoint.events} events ` +
        `checkpointed before ENOSPC, ${buffered} held in Redis, stored ${counts.rows}, duplicates ${counts.rows - counts.distinct}`,
    );
  });
});
