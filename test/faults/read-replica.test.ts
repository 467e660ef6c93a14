import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type PrivateDatabaseEnv } from '../helpers/env.ts';
import { freePort, PrivatePostgres } from '../helpers/private-servers.ts';
import type { TributaryProcess } from '../helpers/processes.ts';
import { call, event } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

// A real primary and a streaming replica made from it (pg_basebackup -R), both private
// clusters: the API reads from the replica while it keeps up, from the primary when it is
// stopped or its replay is paused past READ_MAX_LAG_S, and from the replica again after.
const MAX_LAG_S = 10;

let primary: PrivatePostgres;
let replica: PrivatePostgres;
let t: PrivateDatabaseEnv;
let api: TributaryProcess;
let onReplica: pg.Pool;

const withDb = (url: string, port: number) => {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
};

beforeAll(async () => {
  primary = new PrivatePostgres(await freePort(), { hba: ['host replication all 127.0.0.1/32 trust'] });
  primary.start();
  t = createTestEnv({ postgres: primary, sharedCheckpointDir: true, settings: { BATCH_MAX_WAIT_MS: '50' } });
  await t.migrate();
  replica = new PrivatePostgres(await freePort(), { from: primary });
  replica.start();
  const readUrl = withDb(t.databaseUrl, replica.port);
  onReplica = new pg.Pool({ connectionString: readUrl, max: 2 });
  onReplica.on('error', () => {});
  api = await t.start('serve', {
    DATABASE_READ_URL: readUrl,
    READ_MAX_LAG_S: String(MAX_LAG_S),
    READ_LAG_CHECK_MS: '200',
  });
  await t.start('work');
}, 60_000);

afterAll(async () => {
  await onReplica?.end().catch(() => {});
  await t?.cleanup();
  replica?.destroy();
});

/** NDJSON lines of an export answer. */
const lines = (body: unknown) => String(body).trim().split('\n').filter(Boolean).length;

/** Where `/health` says reads go. */
async function reads(): Promise<{ target: string; lagS: number | null; reason: string | null }> {
  return (await call(api.url, '/health')).body.reads;
}

const waitForReads = (target: 'replica' | 'primary', what: string) =>
  waitFor(async () => ((await reads()).target === target ? true : null), 20_000, what, 100);

/** Ids `GET /v1/events` lists for a user (one page is enough here). */
async function listed(userId: string): Promise<Set<string>> {
  const res = await call(api.url, `/v1/events?userId=${userId}&limit=1000`);
  expect(res.status).toBe(200);
  return new Set((res.body.events as { id: string }[]).map((e) => e.id));
}

async function sendAndStore(userId: string, n: number): Promise<string[]> {
  const events = Array.from({ length: n }, () => event({ userId }));
  const res = await call(api.url, '/v1/events/batch', { body: { events } });
  expect(res.body.accepted).toBe(n);
  const ids = events.map((e) => e.id);
  await waitFor(
    async () => {
      const { rows } = await t.pool.query(
        'SELECT count(*)::int AS n FROM events WHERE id = ANY($1::uuid[])',
        [ids],
      );
      return rows[0].n === n ? true : null;
    },
    20_000,
    `${n} events of ${userId} stored`,
  );
  return events.map((e) => e.id as string);
}

/** Waits until the replica has replayed everything the primary has written. */
async function replicaCaughtUp(): Promise<void> {
  const { rows } = await t.pool.query('SELECT pg_current_wal_lsn()::text AS lsn');
  await waitFor(
    async () => {
      const r = await onReplica.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [rows[0].lsn]);
      return r.rows[0].ok ? true : null;
    },
    20_000,
    'replica caught up',
  );
}

describe('reads on a streaming replica (DATABASE_READ_URL)', () => {
  it('land on the replica, survive its stop, come back when it returns, and move to the primary while replay is paused past the lag limit', async () => {
    const a = await sendAndStore('reader-a', 50);
    await replicaCaughtUp();
    await waitForReads('replica', 'reads on the replica');
    expect([...(await listed('reader-a'))].sort()).toEqual([...a].sort());
    const readsConnected = await onReplica.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'tributary-serve-reads'",
    );
    expect(readsConnected.rows[0].n).toBeGreaterThan(0);

    // Replay paused, then events B written on the primary: reads still on the replica (lag
    // under the limit) see A only — the proof that they run there; past the limit, the primary.
    await onReplica.query('SELECT pg_wal_replay_pause()');
    const pausedAt = Date.now();
    await sendAndStore('reader-a', 80);
    expect((await reads()).target).toBe('replica');
    expect(await listed('reader-a')).toEqual(new Set(a));
    const exportStale = await call(api.url, '/v1/users/reader-a/events/export');
    expect(exportStale.status).toBe(200);
    expect(lines(exportStale.body)).toBe(50);
    // Within the limit since the last replayed commit (A's): the reads above were on time.
    expect(Date.now() - pausedAt).toBeLessThan(MAX_LAG_S * 1000);
    await waitForReads('primary', 'reads moved to the primary (replay paused)');
    const movedAfterPauseS = (Date.now() - pausedAt) / 1000;
    const health = await reads();
    expect(health.reason).toMatch(/replay lag .* > READ_MAX_LAG_S/);
    expect(health.lagS).toBeGreaterThan(MAX_LAG_S);
    expect((await listed('reader-a')).size).toBe(130);
    const metrics = String((await call(api.url, '/metrics', { key: null })).body);
    expect(metrics).toMatch(/^tributary_db_reads_on_replica 0$/m);
    expect(metrics).toMatch(/^tributary_db_read_target_changes_total\{to="primary"\} [1-9]/m);

    // Replay resumed: back on the replica, which now has everything.
    await onReplica.query('SELECT pg_wal_replay_resume()');
    const resumedAt = Date.now();
    await waitForReads('replica', 'reads back on the replica after replay resumed');
    const backAfterResumeS = (Date.now() - resumedAt) / 1000;
    expect((await listed('reader-a')).size).toBe(130);

    // The replica stopped: reads go to the primary at once (a failed read is run again there).
    replica.stop();
    const stoppedAt = Date.now();
    expect((await listed('reader-a')).size).toBe(130);
    await waitForReads('primary', 'reads on the primary while the replica is down');
    const primaryAfterStopS = (Date.now() - stoppedAt) / 1000;
    expect((await reads()).reason).toMatch(/unreachable|a read failed/);
    const exported = await call(api.url, '/v1/users/reader-a/events/export');
    expect(exported.status).toBe(200);
    expect(lines(exported.body)).toBe(130);
    const business = await call(api.url, '/health/business');
    expect(business.status).toBe(200);

    // Back: reads return to it.
    replica.start();
    const restartedAt = Date.now();
    await waitForReads('replica', 'reads back on the replica after its restart');
    const backAfterRestartS = (Date.now() - restartedAt) / 1000;
    console.log(
      `[read-replica] READ_MAX_LAG_S ${MAX_LAG_S}, checks every 0.2 s: reads on the primary ${movedAfterPauseS.toFixed(1)} s after replay was paused (lag ${health.lagS} s), back ${backAfterResumeS.toFixed(1)} s after it resumed; on the primary ${primaryAfterStopS.toFixed(1)} s after the replica stopped (the failed read itself retried there), back ${backAfterRestartS.toFixed(1)} s after its start`,
    );
    expect((await listed('reader-a')).size).toBe(130);
  });
});
