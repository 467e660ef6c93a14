import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { describe, expect } from 'vitest';
import { createObjectStore, type ObjectStore } from '../../src/archive/object-store.ts';
import { stagingSchema } from '../../src/materialize/spec.ts';
import { BASE_DATABASE_URL } from '../helpers/env.ts';
import { archiveStackTest } from '../helpers/fixtures.ts';
import { parquetSets, postgresSets, type TableSets } from '../helpers/mat-destinations.ts';
import { expectAppendTablesMatch, expectDailyCountsMatch, expectTraitsMatch } from '../helpers/mat-oracle.ts';
import { segmentTraffic, sendBatches } from '../helpers/mat-traffic.ts';
import type { TributaryProcess } from '../helpers/processes.ts';
import { call, type Stack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * The bad things that can happen to an outside destination (ARCHITECTURE §17): the process
 * syncing another PostgreSQL database is killed (kill -9) while its sync's transaction there
 * waits on a lock; that database refuses connections for a while; a Parquet sync is cut off
 * after writing objects but before its manifest. Each time the staging schema keeps being
 * built, and once things recover every destination holds exactly the rows of its staging
 * schema, which equals the oracle computed from `events`.
 */
const test = archiveStackTest({
  workers: 2,
  env: {
    MATERIALIZE_POLL_MS: '50',
    MATERIALIZE_LEASE_TTL_S: '2',
    MATERIALIZE_BATCH_ROWS: '300',
    CLAIM_IDLE_MS: '1000',
  },
});
const SERVICE = 'dest-kill';
const prefix = `x${randomUUID().slice(0, 6)}`;
const remoteDb = `${prefix}_dest`;
const remoteUrl = (() => {
  const u = new URL(BASE_DATABASE_URL);
  u.pathname = `/${remoteDb}`;
  return u.toString();
})();
const LAKE = `lake/${prefix}/`;
let admin: pg.Pool;
let remote: pg.Pool;
let store: ObjectStore;
let writeKey: string;

test.beforeAll(async ({ stack, s3 }) => {
  admin = new pg.Pool({ connectionString: BASE_DATABASE_URL, max: 2 });
  await admin.query(`CREATE DATABASE "${remoteDb}"`);
  remote = new pg.Pool({ connectionString: remoteUrl, max: 2 });
  remote.on('error', () => {});
  store = createObjectStore(s3.config);
  const key = await call(stack.url, '/v1/admin/keys', {
    body: { name: 'seg', scopes: ['ingest'], services: [SERVICE], rateLimitPerMinute: 1_000_000 },
  });
  writeKey = key.body.key;
});
test.afterAll(async () => {
  await remote?.end();
  await store?.close();
  await admin?.query(`DROP DATABASE IF EXISTS "${remoteDb}" WITH (FORCE)`);
  await admin?.end();
});

const stored = async (stack: Stack) =>
  Number((await stack.env.pool.query('SELECT count(*) AS n FROM events')).rows[0].n);

/** Every event applied to the staging schemas, and each destination equal to its staging schema. */
async function synced(stack: Stack, what: string): Promise<Record<string, TableSets>> {
  let last: unknown;
  try {
    return await waitFor(
      async () => {
        const n = await stored(stack);
        const out: Record<string, TableSets> = {};
        for (const name of ['kr', 'kl']) {
          const m = (await call(stack.url, `/v1/admin/materializations/${name}`)).body;
          if (m.state !== 'running' || m.lag.pending !== 0 || m.lag.staleDays !== 0) {
            last = { name, state: m.state, lag: m.lag, lastError: m.lastError };
            return undefined;
          }
          const staged = await postgresSets(stack.env.pool, stagingSchema(name)).catch(() => undefined);
          const got =
            name === 'kr'
              ? await postgresSets(remote, 'analytics').catch(() => undefined)
              : (await parquetSets(store, LAKE).catch(() => undefined))?.sets;
          if (!staged || JSON.stringify(staged) !== JSON.stringify(got)) {
            last = { name, differ: 'destination differs from its staging schema' };
            return undefined;
          }
          out[name] = staged;
        }
        return n === (await stored(stack)) ? out : undefined;
      },
      90_000,
      what,
      500,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last: ${JSON.stringify(last)}`);
  }
}

describe('outside destinations under faults', () => {
  const calls = segmentTraffic({ seed: 5, users: 16, eventNames: 30, wideProperties: 40, prefix });
  const quarter = Math.ceil(calls.length / 4);

  test('kill -9 mid-sync, the destination refusing connections, a Parquet sync cut off', async ({
    stack,
  }) => {
    for (const [name, destination] of [
      ['kr', { kind: 'postgres', connection: remoteUrl, schema: 'analytics' }],
      ['kl', { kind: 'parquet', prefix: LAKE }],
    ] as const) {
      const put = await call(stack.url, `/v1/admin/materializations/${name}`, {
        method: 'PUT',
        body: { destination },
      });
      expect(put.status).toBe(201);
    }
    await sendBatches(stack, writeKey, calls.slice(0, quarter));
    await synced(stack, 'first sync');

    // 1. kill -9 while the sync's transaction in the other database waits on a lock there.
    const blocker = await remote.connect();
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE analytics.tracks IN EXCLUSIVE MODE');
    await sendBatches(stack, writeKey, calls.slice(quarter, 2 * quarter));
    await waitFor(
      async () => {
        const r = await remote.query(
          `SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND application_name = 'tributary-materialize'`,
          [remoteDb],
        );
        return (r.rowCount ?? 0) > 0 ? true : undefined;
      },
      30_000,
      'a sync waiting on the lock',
      50,
    );
    const holder = (await call(stack.url, '/v1/admin/materializations/kr')).body.runningOn as string;
    const victim = stack.workers.find((w) => holder?.endsWith(`-${w.child.pid}`)) as TributaryProcess;
    expect(victim, `a worker named ${holder}`).toBeDefined();
    await victim.kill9();
    stack.workers.splice(stack.workers.indexOf(victim), 1);
    await blocker.query('ROLLBACK');
    blocker.release();
    await stack.addWorker();
    await synced(stack, 'synced again after the kill');

    // 2. The other database refuses connections: the staging schema goes on, the sync fails
    // (and says so), then catches up.
    await admin.query(`ALTER DATABASE "${remoteDb}" ALLOW_CONNECTIONS false`);
    await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
      [remoteDb],
    );
    const appliedBefore = (await call(stack.url, '/v1/admin/materializations/kr')).body
      .eventsApplied as number;
    await sendBatches(stack, writeKey, calls.slice(2 * quarter, 3 * quarter));
    const failing = await waitFor(
      async () => {
        const m = (await call(stack.url, '/v1/admin/materializations/kr')).body;
        return m.eventsApplied > appliedBefore && String(m.lastError ?? '').startsWith('destination:')
          ? m
          : undefined;
      },
      30_000,
      'the sync failing while the staging schema goes on',
      100,
    );
    expect(failing.state).toBe('failed');
    await admin.query(`ALTER DATABASE "${remoteDb}" ALLOW_CONNECTIONS true`);
    await synced(stack, 'synced again after the outage');

    // 3. A Parquet sync cut off after its objects, before its manifest: what it left is swept.
    const orphan = `${LAKE}tracks/service=${SERVICE}/day=2026-01-01/part-cutoff.parquet`;
    await store.putBytes(
      orphan,
      Buffer.from('PAR1 left by a sync that never wrote its manifest'),
      'application/octet-stream',
    );
    const lakeHolder = (await call(stack.url, '/v1/admin/materializations/kl')).body.runningOn as string;
    const lakeVictim = stack.workers.find((w) => lakeHolder?.endsWith(`-${w.child.pid}`)) as TributaryProcess;
    await lakeVictim.kill9();
    stack.workers.splice(stack.workers.indexOf(lakeVictim), 1);
    await stack.addWorker();
    await sendBatches(stack, writeKey, calls.slice(3 * quarter));
    const final = await synced(stack, 'synced after the restart');
    await waitFor(
      async () => ((await store.head(orphan)) === undefined ? true : undefined),
      30_000,
      'the orphan swept',
    );
    const { manifest } = await parquetSets(store, LAKE);
    const listed = Object.values(manifest.tables).flatMap((t) => t.objects.map((o) => o.key));
    const inStore = (await store.list(LAKE)).filter((k) => k.endsWith('.parquet'));
    expect(inStore.sort()).toEqual(listed.sort());

    // Every acknowledged event stored once and materialised once: the staging schemas equal the oracle.
    const distinct = new Set(calls.map((c) => c.messageId)).size;
    expect(await stored(stack)).toBe(distinct);
    for (const name of ['kr', 'kl']) {
      const schema = stagingSchema(name);
      await expectAppendTablesMatch(stack.env.pool, schema);
      await expectTraitsMatch(stack.env.pool, schema, 'users');
      await expectDailyCountsMatch(stack.env.pool, schema);
    }
    console.log(
      `[materialize-destination-kill] ${distinct} events; tracks rows: remote ${final.kr?.tracks?.rows}, lake ${final.kl?.tracks?.rows}`,
    );
  }, 300_000);
});
