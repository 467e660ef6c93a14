/**
 * Dead-letter replay against real Redis, without workers reading the streams: every
 * replayed entry ends up in exactly one place, the dead-letter stream or its partition.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeadLetterStream } from '../../src/buffer/dead-letter.ts';
import { type BufferKeys, bufferKeys } from '../../src/buffer/keys.ts';
import type { RedisLike } from '../../src/buffer/redis-client.ts';
import { entryFields } from '../../src/buffer/redis-reply.ts';
import { type BufferRedis, registerScripts } from '../../src/buffer/scripts.ts';
import type { StreamEntry } from '../../src/buffer/stream-entry.ts';
import { createTestEnv, type TestEnv } from '../helpers/env.ts';

const PARTITIONS = 4;
let env: TestEnv;
let redis: BufferRedis;
let run = 0;
/** A fresh set of keys per test, under the test prefix (removed by cleanup). */
const freshKeys = () => bufferKeys(`${env.prefix}:${run++}`, PARTITIONS);

beforeAll(async () => {
  env = createTestEnv();
  await env.redis.ping();
  redis = registerScripts(env.redis);
});
afterAll(async () => {
  await env?.cleanup();
});

const entry = (partition: number, n: number): StreamEntry => ({
  partition,
  id: `${n + 1}-0`,
  version: '1',
  event: JSON.stringify({ n }),
  traceparent: `tp-${n}`,
  deliveries: 5,
});

/** Dead-letters `count` entries spread over the partitions; returns their dead-letter ids. */
async function deadLetters(keys: BufferKeys, count: number, client: RedisLike = redis): Promise<string[]> {
  const dead = new DeadLetterStream({ redis: client, keys });
  await dead.record(
    Array.from({ length: count }, (_, n) => ({ entry: entry(n % PARTITIONS, n), error: 'x' })),
  );
  return (await redis.xrange(keys.deadLetter, '-', '+')).map(([id]) => id);
}

/** Event JSON of every entry of every partition stream, by partition. */
async function buffered(keys: BufferKeys): Promise<string[][]> {
  return Promise.all(
    keys.streams.map(async (key) =>
      (await redis.xrange(key, '-', '+')).map(([, flat]) => entryFields(flat).e ?? ''),
    ),
  );
}

/** A second connection that reports itself as a cluster client: replay takes its cluster path. */
function asClusterClient(): RedisLike {
  const client = env.redis.duplicate();
  Object.defineProperty(client, 'isCluster', { value: true });
  return client;
}

describe('dead-letter replay', () => {
  it('the script moves only ids still there, each to its partition, with its fields', async () => {
    const keys = freshKeys();
    const ids = await deadLetters(keys, 3);
    // One of them is replayed by someone else (or deleted by an operator) meanwhile.
    await redis.xdel(keys.deadLetter, ids[1] as string);
    const targets = [keys.stream(0), keys.stream(2)];
    const moved = await redis.tributaryReplayDead(
      3,
      keys.deadLetter,
      ...targets,
      '1',
      ids[0] as string,
      '2',
      ids[1] as string,
      '2',
      ids[2] as string,
      '3',
    );
    expect(moved).toBe(2);
    expect(await redis.xlen(keys.deadLetter)).toBe(0);
    const [p0, p1, p2] = await buffered(keys);
    // Entry 2 came from partition 2, and entry 0 from partition 0; nothing doubled.
    expect({ p0, p1, p2 }).toEqual({ p0: ['{"n":0}'], p1: [], p2: ['{"n":2}'] });
    const [[, flat] = ['', []]] = await redis.xrange(keys.stream(2), '-', '+');
    expect(entryFields(flat)).toEqual({ v: '1', e: '{"n":2}', tp: 'tp-2' });
  });

  it('two replays at once move every entry once: never both dead and buffered, never twice', async () => {
    const keys = freshKeys();
    await deadLetters(keys, 60);
    const other = env.redis.duplicate();
    const a = new DeadLetterStream({ redis, keys });
    const b = new DeadLetterStream({ redis: other, keys });
    const [ra, rb] = await Promise.all([a.replay(1_000), b.replay(1_000)]);
    other.disconnect();
    expect(ra + rb).toBe(60);
    expect(await redis.xlen(keys.deadLetter)).toBe(0);
    const all = (await buffered(keys)).flat();
    expect(all).toHaveLength(60);
    expect(new Set(all).size).toBe(60);
  });

  it('sends an entry of a partition this deployment no longer has to partition 0', async () => {
    const keys = freshKeys();
    await redis.xadd(keys.deadLetter, '*', 'stream', 'old:events:{99}', 'e', '{"n":"old"}', 'error', 'x');
    expect(await new DeadLetterStream({ redis, keys }).replay(10)).toBe(1);
    const [, flat] = (await redis.xrange(keys.stream(0), '-', '+'))[0] ?? ['', []];
    expect(entryFields(flat)).toEqual({ v: '1', e: '{"n":"old"}', tp: '' });
  });

  it('on a cluster (no script across slots), concurrent replays still leave one copy of each', async () => {
    const keys = freshKeys();
    await deadLetters(keys, 40);
    const clients = [asClusterClient(), asClusterClient()];
    const [ra, rb] = await Promise.all(
      clients.map((c) => new DeadLetterStream({ redis: c, keys }).replay(100)),
    );
    for (const c of clients) c.disconnect();
    expect((ra ?? 0) + (rb ?? 0)).toBe(40);
    expect(await redis.xlen(keys.deadLetter)).toBe(0);
    const all = (await buffered(keys)).flat();
    expect(all).toHaveLength(40);
    expect(new Set(all).size).toBe(40);
  });

  describe('erasure of dead letters racing a replay', () => {
    for (const cluster of [false, true]) {
      it(`${cluster ? 'on a cluster' : 'on one server'}: each entry is replayed or erased, once, and only the erased are counted`, async () => {
        const keys = freshKeys();
        const eraser = cluster ? asClusterClient() : env.redis.duplicate();
        const replayer = asClusterClient();
        const dead = new DeadLetterStream({ redis: eraser, keys });
        const replay = new DeadLetterStream({ redis: replayer, keys });
        // Half were moved back by a replay before the erasure got to them: only the rest count.
        const ids = await deadLetters(keys, 60);
        expect(await replay.replay(30)).toBe(30);
        expect(await dead.erase(ids, 'req-1')).toBe(30);
        expect(await redis.hget(keys.dsarDropped('req-1'), 'deadLetter')).toBe('30');
        expect(await redis.ttl(keys.dsarDropped('req-1'))).toBeGreaterThan(0);
        // Erasing again finds nothing and counts nothing more.
        expect(await dead.erase(ids, 'req-1')).toBe(0);
        expect(await redis.hget(keys.dsarDropped('req-1'), 'deadLetter')).toBe('30');

        // At the same time: whichever gets an entry first has it, the other skips it.
        const more = (await deadLetters(keys, 60)).filter((id) => !ids.includes(id));
        const [erased, replayed] = await Promise.all([dead.erase(more, 'req-2'), replay.replay(1_000)]);
        eraser.disconnect();
        replayer.disconnect();
        expect(erased + replayed).toBe(60);
        expect(await redis.xlen(keys.deadLetter)).toBe(0);
        const moved = (await buffered(keys)).flat();
        expect(moved).toHaveLength(30 + replayed);
        expect(Number((await redis.hget(keys.dsarDropped('req-2'), 'deadLetter')) ?? 0)).toBe(erased);
      });
    }
  });
});
