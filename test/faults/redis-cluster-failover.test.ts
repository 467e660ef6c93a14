/**
 * A Redis Cluster primary dies under load (kill -9) and its replica takes over. With
 * REDIS_WAIT_REPLICAS=1 a 202 means the replica had the write, so the failover loses no
 * acknowledged event: the API answers 503 for the partitions of the lost primary until
 * the cluster has moved their slots (ioredis follows MOVED and refreshes its slot map),
 * the worker keeps reading the other partitions, nobody restarts a process, and every
 * acknowledged event is stored exactly once.
 */
import { describe, expect } from 'vitest';
import { bufferKeys } from '../../src/buffer/keys.ts';
import { redisClusterTest } from '../helpers/fixtures.ts';
import { IngestLoad } from '../helpers/ingest-load.ts';
import type { TributaryProcess } from '../helpers/processes.ts';
import { expectBufferDrained, expectStoredExactlyOnce } from '../helpers/stored-once.ts';
import { sleep, waitFor } from '../helpers/wait.ts';

// A replica per primary, promoted 1 s after its primary stops answering.
const test = redisClusterTest(
  { primaries: 3, replicasPerPrimary: 1, nodeTimeoutMs: 1_000 },
  { REDIS_WAIT_REPLICAS: '1', CLAIM_IDLE_MS: '2000' },
);

let api: TributaryProcess;
let worker: TributaryProcess;

test.beforeAll(async ({ testEnv }) => {
  [api, worker] = await Promise.all([testEnv.start('serve'), testEnv.start('work')]);
}, 60_000);

describe('Redis Cluster failover', () => {
  test('kill -9 of a primary under load: its replica takes over and no acknowledged event is lost', async ({
    testEnv: env,
    client,
    cluster,
  }) => {
    const keys = bufferKeys(env.prefix, 8);
    const load = new IngestLoad({ url: api.url, batchSize: 100 });
    load.start();
    await waitFor(async () => load.acknowledged.size >= 5_000, 30_000, 'load under way');

    const victimPort = await cluster.ownerOf(keys.stream(0));
    cluster.node(victimPort).kill9();
    const killedAt = Date.now();
    // The replica is promoted once the others agree the primary is gone.
    await waitFor(
      async () => (await cluster.ownerOf(keys.stream(0)).catch(() => victimPort)) !== victimPort,
      30_000,
      'failover',
    );
    const failedOverAt = Date.now();
    // The old primary comes back as a replica of the new one: WAIT 1 is satisfiable again.
    cluster.node(victimPort).start();
    await waitFor(async () => (await cluster.role(victimPort)) === 'slave', 30_000, 'old primary rejoined');
    await cluster.waitUntilOk(30_000, 1);
    const rejoinedAt = Date.now();
    const firstAck = await waitFor(
      async () => load.exchanges.find((x) => x.sentAt >= rejoinedAt && x.status === 202),
      30_000,
      'a 202 after the old primary rejoined',
    );
    // A duration, not a wait: the load runs on for 2 s with the old primary back.
    await sleep(2_000);
    await load.stop();
    await load.drain(60_000);

    expect(load.anomalies).toEqual([]);
    const refused = load.exchanges.filter((x) => x.status !== 202);
    for (const x of refused) {
      expect({ status: x.status, code: x.code }).toEqual({ status: 503, code: 'buffer_unavailable' });
    }
    // Until the old primary rejoined as its replica, writes to the new primary's slots had no
    // replica to confirm them (WAIT) and were refused; whether the load hit that window
    // depends on timing, so it is reported below rather than asserted.
    const refusedBeforeRejoin = refused.filter(
      (x) => x.sentAt > failedOverAt && x.doneAt < rejoinedAt,
    ).length;
    expect(api.child.exitCode).toBeNull();
    expect(worker.child.exitCode).toBeNull();
    expect(load.acknowledged.size).toBe(load.sent.size);
    const counts = await expectStoredExactlyOnce(env.pool, load.acknowledged, 90_000);
    await expectBufferDrained(client, env.prefix);

    console.info(
      `[redis-cluster failover] ${JSON.stringify({
        sent: load.sent.size,
        stored: counts.rows,
        duplicates: counts.rows - counts.distinct,
        statuses: load.statuses(),
        failoverMs: failedOverAt - killedAt,
        rejoinMs: rejoinedAt - failedOverAt,
        refusedBeforeRejoin,
        firstAckAfterRejoinMs: firstAck.doneAt - rejoinedAt,
      })}`,
    );
  });
});
