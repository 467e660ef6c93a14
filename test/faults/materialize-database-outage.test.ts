import { describe, expect } from 'vitest';
import { ADMIN_KEY } from '../helpers/env.ts';
import { FAST_BREAKER, privateDatabaseTest } from '../helpers/fixtures.ts';
import {
  expectAppendTablesMatch,
  expectDailyCountsMatch,
  expectTraitsMatch,
  tableDigests,
} from '../helpers/mat-oracle.ts';
import { call, event } from '../helpers/stack.ts';
import { sleep, waitFor } from '../helpers/wait.ts';

/**
 * A materialisation through an outage of PostgreSQL (ARCHITECTURE §17 with §1): events keep
 * being accepted while the database is down; the runner's batches fail and are retried;
 * once it is back every event is stored once and applied once, and the tables equal their
 * oracle and a rebuild.
 */
const test = privateDatabaseTest({ ...FAST_BREAKER, MATERIALIZE_POLL_MS: '100', CLAIM_IDLE_MS: '1000' });

describe('materialisations through a PostgreSQL outage', () => {
  test('batches retried after the outage: every event applied once, tables equal to a rebuild', async ({
    testEnv: t,
  }) => {
    const serve = await t.start('serve');
    const worker = await t.start('work');
    const api = (path: string, opts: Parameters<typeof call>[2] = {}) =>
      call(serve.url, path, { key: ADMIN_KEY, ...opts });
    expect(
      (
        await api('/v1/admin/materializations/out', {
          method: 'PUT',
          body: { destination: { kind: 'postgres', schema: 'out' } },
        })
      ).status,
    ).toBe(201);
    const batch = (n: number, tag: string) =>
      Array.from({ length: n }, (_, i) =>
        event({ userId: `out-${i % 9}`, type: `out.${tag}.${i % 4}`, metadata: { n: i, tag } }),
      );
    const acknowledged = new Set<string>();
    const send = async (events: Record<string, unknown>[]) => {
      const res = await api('/v1/events/batch', { body: { events } });
      expect(res.status).toBe(202);
      for (const id of res.body.ids as string[]) acknowledged.add(id);
    };
    const stored = async () => Number((await t.pool.query('SELECT count(*) AS n FROM events')).rows[0].n);
    for (let i = 0; i < 5; i++) await send(batch(100, `before${i}`));
    t.postgres.stop();
    const downAt = performance.now();
    try {
      // Long enough for the runner's batches to fail and back off.
      for (let i = 0; i < 5; i++) {
        await send(batch(100, `during${i}`));
        await sleep(600);
      }
    } finally {
      t.postgres.start();
    }
    const upAt = performance.now();
    try {
      await waitFor(
        async () => (await stored().catch(() => 0)) === acknowledged.size,
        40_000,
        'every event stored',
        250,
      );
    } catch (err) {
      const problems = [...worker.logs, ...serve.logs].filter((l) => Number(l.level) >= 40).slice(-12);
      const counts = await t.pool.query(
        `SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM event_feed) AS feed,
                (SELECT row_to_json(m) FROM materializations m) AS mat,
                (SELECT json_agg(json_build_object('app', application_name, 'state', state, 'wait', wait_event_type || ':' || wait_event, 'q', left(query, 80))) FROM pg_stat_activity WHERE datname = current_database()) AS activity`,
      );
      throw new Error(
        `${(err as Error).message}: ${JSON.stringify(counts.rows[0])} of ${acknowledged.size}; ${JSON.stringify(problems)}`,
      );
    }
    const done = await waitFor(
      async () => {
        const before = await stored();
        const m = (await api('/v1/admin/materializations/out')).body;
        const caught =
          m.state === 'running' &&
          m.lag.pending === 0 &&
          m.lag.staleDays === 0 &&
          m.rebuildRequestedAt === null;
        return caught && m.eventsApplied >= acknowledged.size && before === (await stored()) ? m : undefined;
      },
      90_000,
      'applied after the outage',
      200,
    );
    const caughtUpS = (performance.now() - upAt) / 1000;
    const counts = await expectAppendTablesMatch(t.pool, 'out');
    expect(counts.tracks).toBe(acknowledged.size);
    await expectDailyCountsMatch(t.pool, 'out');
    await expectTraitsMatch(t.pool, 'out', 'users');
    const incremental = await tableDigests(t.pool, 'out');
    expect((await api('/v1/admin/materializations/out/rebuild', { method: 'POST' })).status).toBe(202);
    await waitFor(
      async () => {
        const m = (await api('/v1/admin/materializations/out')).body;
        return m.rebuildRequestedAt === null &&
          m.lastRebuildAt !== done.lastRebuildAt &&
          m.lag.staleDays === 0
          ? m
          : undefined;
      },
      60_000,
      'rebuilt',
      200,
    );
    expect(await tableDigests(t.pool, 'out')).toEqual(incremental);
    // The runner failed while the database was away, and the process lived through it.
    expect(worker.child.exitCode).toBeNull();
    console.log(
      `[materialize-outage] ${acknowledged.size} events, PostgreSQL down ${((upAt - downAt) / 1000).toFixed(1)} s; ` +
        `stored and applied ${caughtUpS.toFixed(1)} s after it came back; equal to a rebuild`,
    );
  });
});
