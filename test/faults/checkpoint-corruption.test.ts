import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { decodeSegment, encodeRecord } from '../../src/worker/checkpoint/record.ts';
import { FAST_BREAKER, ingestWithDatabaseDown, privateDatabaseTest } from '../helpers/fixtures.ts';
import { call, waitFor } from '../helpers/stack.ts';
import { expectBufferDrained, expectStoredExactlyOnce } from '../helpers/stored-once.ts';

const EVENTS = 2_000;

// One worker at a time here: it takes the first directory under CHECKPOINT_DIR.
const workerDir = (checkpointDir: string) => join(checkpointDir, 'worker-0');
const segments = (checkpointDir: string) =>
  readdirSync(workerDir(checkpointDir)).filter((n) => n.startsWith('segment-'));

const test = privateDatabaseTest({
  // Spill everything as soon as the breaker opens: the whole load ends up on disk.
  CHECKPOINT_SPILL_THRESHOLD: '0',
  BATCH_SIZE: '200',
  ...FAST_BREAKER,
});

describe('checkpoint corruption', () => {
  test('truncates a torn last record, quarantines a flipped one, replays the rest, and keeps running', async ({
    testEnv: t,
  }) => {
    const { postgres, pool, redis, prefix, checkpointDir } = t;
    const { api, worker, load } = await ingestWithDatabaseDown(t, { batchSize: 100, limit: EVENTS });
    expect(load.acknowledged.size).toBe(EVENTS);
    await waitFor(
      async () => (await call(api.url, '/health/database')).body.checkpoint?.events === EVENTS,
      30_000,
      'every event in the checkpoint',
    );
    expect(await worker.stop()).toBe(0);

    // The checkpoint is one segment of about ten records (batches of up to 200 events).
    expect(segments(checkpointDir)).toHaveLength(1);
    const path = join(workerDir(checkpointDir), segments(checkpointDir)[0] as string);
    const bytes = readFileSync(path);
    const { records } = decodeSegment(bytes);
    expect(records.length).toBeGreaterThanOrEqual(5);

    // A flipped byte in the middle of a middle record: its events are gone (they were
    // acknowledged in Redis once fsynced); everything around it must survive.
    const victim = records[Math.floor(records.length / 2)] as { offset: number; payload: Buffer };
    const lostIds = victim.payload
      .toString('utf8')
      .split('\n')
      .map((line) => (JSON.parse(line) as { id: string }).id);
    const flipAt = victim.offset + 16 + Math.floor(victim.payload.length / 2);
    bytes[flipAt] = (bytes[flipAt] as number) ^ 0x20;
    // A record cut short at the end, as a crash in the middle of a write leaves it. Such a
    // batch was never acknowledged (that happens after fsync), so Redis still has it; here
    // it holds events that were never sent at all, which must not appear.
    const tornIds = [randomUUID(), randomUUID()];
    const torn = encodeRecord(
      Buffer.from(tornIds.map((id) => JSON.stringify({ id, service: 'torn', type: 'x' })).join('\n')),
    );
    writeFileSync(path, Buffer.concat([bytes, torn.subarray(0, torn.length - 7)]));

    postgres.start();
    const successor = await t.start('work');
    const truncated = await successor.waitForLog((l) => String(l.msg).includes('torn last record truncated'));
    const quarantined = await successor.waitForLog((l) => String(l.msg).includes('corrupt records skipped'));
    expect(quarantined.corruptRecords).toBe(1);

    const expected = new Set([...load.acknowledged.keys()].filter((id) => !lostIds.includes(id)));
    const counts = await expectStoredExactlyOnce(pool, expected);
    await expectBufferDrained(redis, prefix);
    expect(segments(checkpointDir)).toEqual([]);
    expect(readdirSync(join(workerDir(checkpointDir), 'quarantine'))).toHaveLength(1);
    const torned = await pool.query('SELECT count(*)::int AS n FROM events WHERE id = ANY($1::uuid[])', [
      tornIds,
    ]);
    expect(torned.rows[0].n).toBe(0);
    expect(successor.child.exitCode).toBeNull();
    console.info(
      `[checkpoint-corruption] acknowledged ${load.acknowledged.size}, checkpointed ${EVENTS} in ${records.length} records, ` +
        `torn tail of ${truncated.dropped} bytes truncated, 1 record (${lostIds.length} events) quarantined, ` +
        `stored ${counts.rows}, duplicates ${counts.rows - counts.distinct}`,
    );
  });
});
