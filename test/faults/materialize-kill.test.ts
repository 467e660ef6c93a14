import { randomUUID } from 'node:crypto';
import { describe, expect } from 'vitest';
import { stackTest } from '../helpers/fixtures.ts';
import {
  expectAppendTablesMatch,
  expectDailyCountsMatch,
  expectEventTablesMatch,
  expectTraitsMatch,
  tableDigests,
} from '../helpers/mat-oracle.ts';
import { segmentTraffic, sendBatches } from '../helpers/mat-traffic.ts';
import type { TributaryProcess } from '../helpers/processes.ts';
import { call, type Stack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * kill -9 of the process running a materialisation, mid-batch (ARCHITECTURE §17): its batch's
 * transaction dies with it, the lease runs out (MATERIALIZE_LEASE_TTL_S = 2), another `work`
 * process applies the batch again from the committed position, and every table equals its
 * oracle and a rebuild from scratch, row for row.
 */
const test = stackTest({
  workers: 2,
  env: {
    MATERIALIZE_POLL_MS: '50',
    MATERIALIZE_LEASE_TTL_S: '2',
    MATERIALIZE_BATCH_ROWS: '400',
    CLAIM_IDLE_MS: '1000',
  },
});
const SERVICE = 'mat-kill';
const SCHEMA = 'mk';

async function state(stack: Stack) {
  const m = await call(stack.url, '/v1/admin/materializations/kill');
  expect(m.status).toBe(200);
  return m.body;
}

async function caughtUp(stack: Stack, what: string) {
  const stored = async () =>
    Number((await stack.env.pool.query('SELECT count(*) AS n FROM events')).rows[0].n);
  return waitFor(
    async () => {
      const before = await stored();
      const s = await state(stack);
      const done =
        s.state === 'running' &&
        s.lag.pending === 0 &&
        s.lag.staleDays === 0 &&
        s.rebuildRequestedAt === null;
      return done && before === (await stored()) ? s : undefined;
    },
    90_000,
    what,
    100,
  );
}

describe('materialisation runner killed mid-batch', () => {
  test('kill -9 while a batch waits on a lock: taken over, applied once, equal to a rebuild', async ({
    stack,
  }) => {
    const key = await call(stack.url, '/v1/admin/keys', {
      body: { name: 'seg', scopes: ['ingest'], services: [SERVICE], rateLimitPerMinute: 1_000_000 },
    });
    const prefix = `k${randomUUID().slice(0, 6)}`;
    const calls = segmentTraffic({ seed: 11, users: 20, eventNames: 40, wideProperties: 30, prefix });
    const put = await call(stack.url, '/v1/admin/materializations/kill', {
      method: 'PUT',
      body: { destination: { kind: 'postgres', schema: SCHEMA } },
    });
    expect(put.status).toBe(201);
    await caughtUp(stack, 'the empty build');
    const pool = stack.env.pool;
    const kills: { holder: string; applied: number; takeoverMs: number }[] = [];
    const third = Math.ceil(calls.length / 3);
    for (let k = 0; k < 3; k++) {
      // A lock a feed batch needs mid-way (its tracks insert, after its DDL and catalog), taken
      // before the events arrive.
      const blocker = await pool.connect();
      await blocker.query('BEGIN');
      await blocker.query(`LOCK TABLE ${SCHEMA}.tracks IN EXCLUSIVE MODE`);
      await sendBatches(stack, key.body.key, calls.slice(k * third, (k + 1) * third));
      const waiting = await waitFor(
        async () => {
          const r = await pool.query(
            `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
                AND query LIKE '%INSERT INTO "${SCHEMA}".tracks%'`,
          );
          return (r.rowCount ?? 0) > 0 ? true : undefined;
        },
        30_000,
        'a batch waiting on the lock',
        20,
      );
      expect(waiting).toBe(true);
      const s = await state(stack);
      const holder = s.runningOn as string;
      const victim = stack.workers.find((w) => holder?.endsWith(`-${w.child.pid}`)) as TributaryProcess;
      expect(victim, `a worker named ${holder}`).toBeDefined();
      await victim.kill9();
      stack.workers.splice(stack.workers.indexOf(victim), 1);
      await blocker.query('ROLLBACK');
      blocker.release();
      const killedAt = performance.now();
      await stack.addWorker();
      const after = await waitFor(
        async () => {
          const t = await state(stack);
          return t.runningOn && t.runningOn !== holder && t.eventsApplied > s.eventsApplied ? t : undefined;
        },
        30_000,
        'another process applying',
        50,
      );
      kills.push({ holder, applied: s.eventsApplied, takeoverMs: Math.round(performance.now() - killedAt) });
      expect(after.runningOn).not.toBe(holder);
    }
    // Every event acknowledged is stored (the killed workers' entries reclaimed), then applied.
    const distinct = new Set(calls.map((c) => c.messageId)).size;
    await waitFor(
      async () => Number((await pool.query('SELECT count(*) AS n FROM events')).rows[0].n) === distinct,
      60_000,
      `${distinct} events stored`,
    );
    const done = await caughtUp(stack, 'caught up after the kills');
    expect(done.eventsApplied).toBeGreaterThanOrEqual(distinct);
    const counts = await expectAppendTablesMatch(pool, SCHEMA);
    await expectEventTablesMatch(pool, SCHEMA, done.eventTables);
    await expectTraitsMatch(pool, SCHEMA, 'users');
    await expectDailyCountsMatch(pool, SCHEMA);
    const incremental = await tableDigests(pool, SCHEMA);
    expect(
      (await call(stack.url, '/v1/admin/materializations/kill/rebuild', { method: 'POST' })).status,
    ).toBe(202);
    const rebuilt = await caughtUp(stack, 'rebuilt');
    const digests = await tableDigests(pool, SCHEMA);
    const was = new Map(
      done.columns.map((c: { table: string; column: string; type: string }) => [
        `${c.table}.${c.column}`,
        c.type,
      ]),
    );
    const widened = new Set(
      rebuilt.columns
        .filter(
          (c: { table: string; column: string; type: string }) =>
            was.get(`${c.table}.${c.column}`) !== c.type,
        )
        .map((c: { table: string }) => c.table),
    );
    for (const table of Object.keys(incremental)) {
      if (!widened.has(table))
        expect({ table, digest: digests[table] }).toEqual({ table, digest: incremental[table] });
    }
    console.log(
      `[materialize-kill] 3 kills mid-batch (takeover after ${kills.map((k) => k.takeoverMs).join(', ')} ms), ` +
        `${JSON.stringify(counts)}; rebuild equal on ${Object.keys(incremental).length - widened.size} of ${Object.keys(incremental).length} tables (${widened.size} with widened columns)`,
    );
  });
});
