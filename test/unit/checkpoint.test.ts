import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { Checkpoint, CheckpointFailedError } from '../../src/worker/checkpoint/checkpoint.ts';
import { CheckpointLockedError } from '../../src/worker/checkpoint/lock.ts';
import { decodeSegment, encodeRecord, RECORD_HEADER_BYTES } from '../../src/worker/checkpoint/record.ts';
import { segmentName } from '../../src/worker/checkpoint/segments.ts';
import { openOwnCheckpoint, replayOrphanedCheckpoints } from '../../src/worker/checkpoint/slots.ts';

const logger = pino({ level: 'silent' });
const dirs: string[] = [];
const open: Checkpoint[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tributary-unit-checkpoint-'));
  dirs.push(dir);
  return dir;
}

async function openCheckpoint(dir: string, metrics = new Metrics(), segmentBytes = 1 << 20) {
  const cp = await Checkpoint.open({ dir, segmentBytes, logger, metrics });
  open.push(cp);
  return cp;
}

async function closeAll() {
  for (const cp of open.splice(0)) await cp.close().catch(() => {});
}

const batch = (n: number, tag: string) =>
  Array.from({ length: n }, (_, i) => JSON.stringify({ id: `${tag}-${i}` }));

async function drain(cp: Checkpoint): Promise<string[]> {
  const seen: string[] = [];
  await cp.replay(
    async (events) => {
      seen.push(...events);
    },
    () => false,
  );
  return seen;
}

async function metricValue(metrics: Metrics, name: string): Promise<number> {
  const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  return Number(m?.values[0]?.value ?? 0);
}

afterEach(async () => {
  await closeAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('checkpoint records', () => {
  const records = [Buffer.from('{"a":1}'), Buffer.from('{"b":2}\n{"c":3}'), Buffer.from('{"d":4}')];
  const file = Buffer.concat(records.map(encodeRecord));

  it('round-trips records', () => {
    const decoded = decodeSegment(file);
    expect(decoded.records.map((r) => r.payload.toString())).toEqual(records.map(String));
    expect(decoded.corrupt).toEqual([]);
    expect(decoded.tornAt).toBeUndefined();
  });

  it('treats an incomplete last record as torn, at every cut point', () => {
    const lastStart = file.length - encodeRecord(records[2] as Buffer).length;
    for (let cut = lastStart + 1; cut < file.length; cut++) {
      const decoded = decodeSegment(file.subarray(0, cut));
      expect(decoded.records).toHaveLength(2);
      expect(decoded.tornAt).toBe(lastStart);
      expect(decoded.corrupt).toEqual([]);
    }
  });

  it('steps over a corrupt record in the middle, wherever the flipped byte is', () => {
    const secondStart = encodeRecord(records[0] as Buffer).length;
    const secondEnd = secondStart + encodeRecord(records[1] as Buffer).length;
    for (let at = secondStart; at < secondEnd; at++) {
      const copy = Buffer.from(file);
      copy[at] = (copy[at] as number) ^ 0x40;
      const decoded = decodeSegment(copy);
      expect(decoded.records.map((r) => r.payload.toString())).toEqual([
        String(records[0]),
        String(records[2]),
      ]);
      expect(decoded.corrupt).toEqual([{ offset: secondStart, length: secondEnd - secondStart }]);
      expect(decoded.tornAt).toBeUndefined();
    }
  });

  it('reports a complete last record with a bad payload as corrupt, not torn', () => {
    const copy = Buffer.from(file);
    copy[copy.length - 1] = (copy[copy.length - 1] as number) ^ 1;
    const decoded = decodeSegment(copy);
    expect(decoded.records).toHaveLength(2);
    expect(decoded.corrupt).toHaveLength(1);
    expect(decoded.tornAt).toBeUndefined();
  });

  it('has a 16-byte header', () => {
    expect(encodeRecord(Buffer.from('x')).length).toBe(RECORD_HEADER_BYTES + 1);
  });
});

describe('checkpoint', () => {
  it('replays batches oldest first across segments and deletes each segment after it is persisted', async () => {
    const dir = tempDir();
    const cp = await openCheckpoint(dir, new Metrics(), 1_024);
    const written: string[] = [];
    for (let i = 0; i < 20; i++) {
      const events = batch(10, `b${i}`);
      written.push(...events);
      await cp.append(events);
    }
    const segments = readdirSync(dir).filter((n) => n.startsWith('segment-'));
    expect(segments.length).toBeGreaterThan(1);
    expect(cp.stats()).toMatchObject({ events: 200, segments: segments.length, failed: undefined });
    expect(await drain(cp)).toEqual(written);
    expect(readdirSync(dir).filter((n) => n.startsWith('segment-'))).toEqual([]);
    expect(cp.stats()).toMatchObject({ events: 0, segments: 0, bytes: 0 });
  });

  it('keeps a segment whose replay failed, and replays it whole next time', async () => {
    const dir = tempDir();
    const cp = await openCheckpoint(dir);
    await cp.append(batch(3, 'a'));
    await cp.append(batch(3, 'b'));
    let calls = 0;
    await expect(
      cp.replay(
        async () => {
          if (++calls === 2) throw new Error('database went away');
        },
        () => false,
      ),
    ).rejects.toThrow('database went away');
    expect(cp.stats().events).toBe(6);
    expect(await drain(cp)).toHaveLength(6);
  });

  it('survives a restart: a new process finds and replays what the last one wrote', async () => {
    const dir = tempDir();
    const first = await openCheckpoint(dir);
    await first.append(batch(5, 'x'));
    await first.close();
    const second = await openCheckpoint(dir);
    expect(second.stats().events).toBe(5);
    expect(await drain(second)).toEqual(batch(5, 'x'));
  });

  it('truncates a torn last record at open and keeps the records before it', async () => {
    const dir = tempDir();
    const first = await openCheckpoint(dir);
    await first.append(batch(4, 'ok'));
    await first.close();
    const path = join(dir, segmentName(1));
    const good = readFileSync(path).length;
    const torn = encodeRecord(Buffer.from(batch(4, 'torn').join('\n'))).subarray(0, 30);
    writeFileSync(path, torn, { flag: 'a' });
    const metrics = new Metrics();
    const cp = await openCheckpoint(dir, metrics);
    expect(readFileSync(path).length).toBe(good);
    expect(await drain(cp)).toEqual(batch(4, 'ok'));
    expect(await metricValue(metrics, 'tributary_checkpoint_corrupt_records_total')).toBe(0);
  });

  it('quarantines and counts a corrupt record, replays the others, and does not fail', async () => {
    const dir = tempDir();
    const first = await openCheckpoint(dir);
    await first.append(batch(2, 'one'));
    await first.append(batch(2, 'two'));
    await first.append(batch(2, 'three'));
    await first.close();
    const path = join(dir, segmentName(1));
    const bytes = readFileSync(path);
    const secondRecordPayload =
      encodeRecord(Buffer.from(batch(2, 'one').join('\n'))).length + RECORD_HEADER_BYTES + 3;
    bytes[secondRecordPayload] = (bytes[secondRecordPayload] as number) ^ 0xff;
    writeFileSync(path, bytes);
    const metrics = new Metrics();
    const cp = await openCheckpoint(dir, metrics);
    expect(await drain(cp)).toEqual([...batch(2, 'one'), ...batch(2, 'three')]);
    expect(await metricValue(metrics, 'tributary_checkpoint_corrupt_records_total')).toBe(1);
    expect(readdirSync(join(dir, 'quarantine'))).toHaveLength(1);
  });

  it('stops checkpointing after a failed write (full disk) and never retries it', async () => {
    const dir = tempDir();
    const cp = await openCheckpoint(dir);
    // The next segment the checkpoint creates is /dev/full: every write fails with ENOSPC.
    symlinkSync('/dev/full', join(dir, segmentName(1)));
    await expect(cp.append(batch(1, 'a'))).rejects.toBeInstanceOf(CheckpointFailedError);
    expect(cp.failed).toBe(true);
    expect(cp.stats().failed).toMatch(/ENOSPC/);
    await expect(cp.append(batch(1, 'b'))).rejects.toThrow(/checkpoint disabled/);
  });

  it('refuses a directory another live process holds', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'owner.lock'), JSON.stringify({ host: hostname(), pid: process.ppid }));
    await expect(openCheckpoint(dir)).rejects.toBeInstanceOf(CheckpointLockedError);
  });

  it('takes over the lock of a process that is gone', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'owner.lock'), JSON.stringify({ host: hostname(), pid: 2 ** 22 + 7 }));
    const cp = await openCheckpoint(dir);
    await cp.append(batch(1, 'a'));
    expect(existsSync(join(dir, 'owner.lock'))).toBe(true);
  });
});

describe('checkpoint directories under one CHECKPOINT_DIR', () => {
  it('gives each worker its own directory and replays the ones left by workers that are gone', async () => {
    const root = tempDir();
    const opts = { root, segmentBytes: 1 << 20, logger, metrics: new Metrics() };
    const first = await openOwnCheckpoint(opts);
    const second = await openOwnCheckpoint(opts);
    open.push(first, second);
    expect([first.dir, second.dir]).toEqual([join(root, 'worker-0'), join(root, 'worker-1')]);

    // worker-1 holds unreplayed batches and goes away; worker-1 is still held (live), so
    // it is skipped while it lives and replayed once it is released.
    await second.append(batch(3, 'gone'));
    const seen: string[] = [];
    const persist = async (events: string[]) => {
      seen.push(...events);
    };
    expect(await replayOrphanedCheckpoints({ ...opts, own: first.dir }, persist, () => false)).toBe(0);
    await second.close();
    expect(await replayOrphanedCheckpoints({ ...opts, own: first.dir }, persist, () => false)).toBe(3);
    expect(seen).toEqual(batch(3, 'gone'));
    expect(readdirSync(join(root, 'worker-1')).filter((n) => n.startsWith('segment-'))).toEqual([]);
    // A worker started now takes the free directory again.
    const third = await openOwnCheckpoint(opts);
    open.push(third);
    expect(third.dir).toBe(join(root, 'worker-1'));
  });
});
