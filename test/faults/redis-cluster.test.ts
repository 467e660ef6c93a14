/**
 * Tributary on a Redis Cluster (REDIS_CLUSTER_NODES) of three primaries, with two `serve`
 * and two `work` processes: every acknowledged event is stored exactly once, the partition
 * streams live on every primary, pub/sub reaches the other processes, and a kill -9 of a
 * worker and of an API process mid-run loses and doubles nothing.
 */
import { type Cluster, Redis } from 'ioredis';
import { describe, expect } from 'vitest';
import { DeadLetterStream } from '../../src/buffer/dead-letter.ts';
import { bufferKeys } from '../../src/buffer/keys.ts';
import type { TestEnv } from '../helpers/env.ts';
import { redisClusterTest } from '../helpers/fixtures.ts';
import { IngestLoad } from '../helpers/ingest-load.ts';
import type { TributaryProcess } from '../helpers/processes.ts';
import { call, event } from '../helpers/stack.ts';
import { expectBufferDrained, expectStoredExactlyOnce } from '../helpers/stored-once.ts';
import { waitFor } from '../helpers/wait.ts';

const EVENTS = 50_000;
const EVENTS_WITH_KILLS = 25_000;
const PARTITIONS = 8;

// A short claim time: the entries a killed worker held are taken over after 2 s.
const test = redisClusterTest(
  { primaries: 3 },
  { STREAM_PARTITIONS: String(PARTITIONS), CLAIM_IDLE_MS: '2000' },
);

let apis: TributaryProcess[] = [];
let workers: TributaryProcess[] = [];
/** Every id acknowledged by either load, so the last check covers both. */
const acknowledged = new Set<string>();

test.beforeAll(async ({ testEnv }) => {
  [apis, workers] = await Promise.all([
    Promise.all([0, 1].map(() => testEnv.start('serve'))),
    Promise.all([0, 1].map(() => testEnv.start('work'))),
  ]);
}, 60_000);

/** Round robin over the API processes still running. */
function roundRobin(alive: () => TributaryProcess[]): () => string {
  let n = 0;
  return () => {
    const list = alive();
    return (list[n++ % list.length] as TributaryProcess).url;
  };
}

/** Runs a load through the APIs until `events` were sent and every one is acknowledged. */
async function ingest(load: IngestLoad, events: number, during?: () => Promise<void>): Promise<void> {
  load.start();
  await during?.();
  await waitFor(async () => load.sent.size >= events, 60_000, `${events} events sent`);
  await load.stop();
  await load.drain(30_000);
  expect(load.anomalies).toEqual([]);
  expect(load.acknowledged.size).toBe(load.sent.size);
  for (const id of load.acknowledged.keys()) acknowledged.add(id);
}

/** Entries a consumer had read and not acknowledged, over every partition. */
async function pendingOf(env: TestEnv, client: Cluster, consumer: string): Promise<number> {
  let held = 0;
  for (const key of bufferKeys(env.prefix, PARTITIONS).streams) {
    const summary = (await client.xpending(key, 'writers')) as [number, unknown, unknown, [string, string][]];
    held += Number(summary[3]?.find(([name]) => name === consumer)?.[1] ?? 0);
  }
  return held;
}

describe('Redis Cluster', () => {
  test(`stores ${EVENTS} events ingested through two APIs exactly once, partitions on all three primaries`, async ({
    testEnv: env,
    client,
    cluster,
  }) => {
    const started = Date.now();
    const load = new IngestLoad({ url: roundRobin(() => apis), batchSize: 250 });
    await ingest(load, EVENTS);
    const ingestedMs = Date.now() - started;
    const counts = await expectStoredExactlyOnce(env.pool, acknowledged, 60_000);
    await expectBufferDrained(client, env.prefix, PARTITIONS);
    const storedMs = Date.now() - started;

    // The partition streams are spread over every primary, and each primary took events.
    const keys = bufferKeys(env.prefix, PARTITIONS);
    const owners = await Promise.all(keys.streams.map((key) => cluster.ownerOf(key)));
    expect(new Set(owners)).toEqual(new Set(await cluster.primaryPorts()));
    for (const [p, key] of keys.streams.entries()) {
      const owner = new Redis({ host: '127.0.0.1', port: owners[p] as number });
      const info = (await owner.xinfo('STREAM', key)) as unknown[];
      owner.disconnect();
      const added = Number(info[info.indexOf('entries-added') + 1]);
      expect(added, key).toBeGreaterThan(0);
    }
    // Both workers stored batches: the consumer group spans them on every node.
    for (const w of workers) {
      expect(w.logs.some((l) => l.msg === 'batch' && Number(l.inserted) > 0)).toBe(true);
    }
    // Health reads every partition (and every primary's memory) across the cluster.
    const health = await call(apis[0]?.url as string, '/health/buffer');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok', length: 0, pending: 0, deadLetters: 0 });
    expect(health.body.partitions).toHaveLength(PARTITIONS);

    console.info(
      `[redis-cluster] ${JSON.stringify({
        sent: load.sent.size,
        stored: counts.rows,
        duplicates: counts.rows - counts.distinct,
        statuses: load.statuses(),
        owners,
        ingestedMs,
        storedMs,
      })}`,
    );
  });

  test('an opt-out on one API process reaches the other at once (pub/sub on the cluster)', async () => {
    const [a, b] = apis as [TributaryProcess, TributaryProcess];
    const userId = 'cluster-subject-1';
    const optOut = await call(a.url, `/v1/users/${userId}/opt-out`, { method: 'PUT' });
    expect(optOut.status).toBeLessThan(300);
    // B learns it from the channel (its full reload runs every 5 minutes).
    const skipped = await waitFor(
      async () => {
        const probe = event({ userId });
        const res = await call(b.url, '/v1/events', { body: probe });
        // Accepted before B heard of the opt-out: stored like any other event.
        if (res.body?.status === 'accepted') acknowledged.add(probe.id as string);
        return res.body?.status === 'skipped' ? res.body : null;
      },
      5_000,
      'event skipped by the other API process',
    );
    expect(skipped.reason).toBe('user_opt_out');
  });

  test('replays dead letters across hash slots: two replays at once move each entry once', async ({
    testEnv: env,
    client,
  }) => {
    // A prefix of its own: no worker reads these partitions, so what replay wrote stays countable.
    const keys = bufferKeys(`${env.prefix}-replay`, PARTITIONS);
    const letters = Array.from({ length: 24 }, (_, n) => ({
      entry: {
        partition: n % PARTITIONS,
        id: `${n + 1}-0`,
        version: '1',
        event: `{"n":${n}}`,
        traceparent: '',
        deliveries: 5,
      },
      error: 'test',
    }));
    await new DeadLetterStream({ redis: client, keys }).record(letters);
    const other = client.duplicate();
    const replays = [client, other].map((redis) => new DeadLetterStream({ redis, keys }));
    const moved = await Promise.all(replays.map((r) => r.replay(100)));
    other.disconnect();
    expect(moved.reduce((a, b) => a + b, 0)).toBe(24);
    expect(await client.xlen(keys.deadLetter)).toBe(0);
    const perPartition = await Promise.all(keys.streams.map((key) => client.xlen(key)));
    expect(perPartition).toEqual(keys.streams.map(() => 24 / PARTITIONS));
  });

  test('erasure deletes and counts the subject’s dead letters: the stream and the counts live in other slots', async ({
    testEnv: env,
    client,
  }) => {
    const keys = bufferKeys(env.prefix, PARTITIONS);
    const receivedAt = new Date(Date.now() - 60_000).toISOString();
    const letter = (userId: string) =>
      JSON.stringify({ ...event({ userId }), timestamp: 'not-a-date', receivedAt });
    for (const userId of ['cluster-erased', 'cluster-erased', 'cluster-erased', 'cluster-kept']) {
      await client.xadd(
        keys.deadLetter,
        '*',
        'stream',
        keys.stream(0),
        'v',
        '1',
        'e',
        letter(userId),
        'error',
        'x',
      );
    }
    const url = apis[0]?.url as string;
    const erase = await call(url, '/v1/users/cluster-erased/events', { method: 'DELETE' });
    expect(erase.status).toBe(202);
    const done = await waitFor(
      async () => {
        const s = await call(url, `/v1/dsar/${erase.body.requestId}`);
        return s.body.status === 'completed' ? s.body : undefined;
      },
      60_000,
      'erasure completed',
    );
    expect(done.deleted.deadLetter).toBe(3);
    const left = await client.xrange(keys.deadLetter, '-', '+');
    expect(left.map(([, f]) => JSON.parse(f[f.indexOf('e') + 1] as string).userId)).toEqual(['cluster-kept']);
    await client.del(keys.deadLetter);
  });

  test('kill -9 of a worker and of an API process mid-run: every acknowledged event is stored once', async ({
    testEnv: env,
    client,
  }) => {
    const started = Date.now();
    const alive = [...apis];
    const load = new IngestLoad({ url: roundRobin(() => alive), batchSize: 250 });
    const [victimApi, victimWorker] = [apis[0] as TributaryProcess, workers[0] as TributaryProcess];
    let heldByVictim = 0;
    await ingest(load, EVENTS_WITH_KILLS, async () => {
      await waitFor(async () => load.acknowledged.size >= 5_000, 30_000, 'load under way');
      alive.splice(alive.indexOf(victimApi), 1);
      await Promise.all([victimApi.kill9(), victimWorker.kill9()]);
      heldByVictim = await pendingOf(
        env,
        client,
        String(victimWorker.logs.find((l) => l.consumer)?.consumer),
      );
    });
    const counts = await expectStoredExactlyOnce(env.pool, acknowledged, 60_000);
    await expectBufferDrained(client, env.prefix, PARTITIONS);
    console.info(
      `[redis-cluster kills] ${JSON.stringify({
        sent: load.sent.size,
        storedInAll: counts.rows,
        duplicates: counts.rows - counts.distinct,
        statuses: load.statuses(),
        heldByVictim,
        ms: Date.now() - started,
      })}`,
    );
  });
});
