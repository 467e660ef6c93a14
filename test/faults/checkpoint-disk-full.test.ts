import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectBufferDrained, expectStoredExactlyOnce, Ledger } from '../helpers/ledger.ts';
import { FAST_BREAKER, type PrivateDatabaseEnv, privateDatabaseEnv } from '../helpers/private-database.ts';
import { call, waitFor } from '../helpers/stack.ts';

const EVENTS = 4_000;

let t: PrivateDatabaseEnv;
let mounted = false;

beforeAll(async () => {
  t = await privateDatabaseEnv('diskfull', {
    CHECKPOINT_SPILL_THRESHOLD: '0',
    BATCH_SIZE: '100',
    CLAIM_IDLE_MS: '1000',
    MAX_DELIVERIES: '3',
    ...FAST_BREAKER,
  });
  // A 128 KiB tmpfs as CHECKPOINT_DIR: the checkpoint runs out of space after a few hundred events.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', t.checkpointDir]);
  mounted = true;
});

afterAll(async () => {
  await Promise.all(t?.processes.map((p) => p.kill9()) ?? []);
  if (mounted) spawnSync('umount', [t.checkpointDir]);
  await t?.cleanup();
});

describe('checkpoint on a full disk', () => {
  it('stops checkpointing, reports it, keeps the rest in Redis, and loses nothing', async () => {
    const { postgres, db, redis, prefix } = t;
    const api = await t.start('serve');
    const worker = await t.start('work');

    postgres.stop();
    const ledger = new Ledger();
    while (ledger.sent < EVENTS) await ledger.sendBatch(api.url, 200);
    expect(ledger.acknowledged.size).toBe(EVENTS);

    const failedLog = await worker.waitForLog((l) => String(l.msg).startsWith('checkpoint write failed'));
    expect(String(failedLog.err)).toMatch(/ENOSPC/);
    const health = await waitFor(async () => {
      const res = await call(api.url, '/health/database', { key: null });
      return res.body.status === 'checkpoint_failed' ? res : null;
    });
    expect(health.status).toBe(503);
    expect(health.body.checkpoint.failed[0]).toMatch(/ENOSPC/);
    // Ingest is unaffected: Redis holds what the checkpoint could not take.
    expect((await ledger.sendBatch(api.url, 10)) === 202).toBe(true);
    const buffered = (await call(api.url, '/health/buffer', { key: null })).body.length;
    expect(buffered).toBeGreaterThan(0);

    postgres.start();
    const counts = await expectStoredExactlyOnce(db, ledger.acknowledged);
    await expectBufferDrained(redis, prefix);
    // The failure stays reported until an operator restarts the worker (it never retries an fsync).
    const after = await call(api.url, '/health/database', { key: null });
    expect(after.body.status).toBe('checkpoint_failed');
    expect(after.body.checkpoint.events).toBe(0);
    console.info(
      `[checkpoint-disk-full] acknowledged ${ledger.acknowledged.size}, ${health.body.checkpoint.events} events ` +
        `checkpointed before ENOSPC, ${buffered} held in Redis, stored ${counts.rows}, duplicates ${counts.rows - counts.distinct}`,
    );
  });
});
