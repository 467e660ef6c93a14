import { describe, expect } from 'vitest';
import { FAST_BREAKER, privateDatabaseTest } from '../helpers/fixtures.ts';
import { call, event, waitFor } from '../helpers/stack.ts';

const test = privateDatabaseTest({
  ...FAST_BREAKER,
  CHECKPOINT_SPILL_THRESHOLD: '0',
  RETENTION_SCHEDULE: 'off',
  DSAR_LOCK_TTL_MS: '3000',
});

describe('erasure of linked ids whose link is in a disk checkpoint', () => {
  test('an alias call replayed from a checkpoint after the erasure of U completed extends it to A: A’s events go too', async ({
    testEnv: t,
  }) => {
    const count = async (sql: string, params: unknown[] = []) =>
      (await t.pool.query<{ n: number }>(sql, params)).rows[0]?.n ?? -1;
    const [A, U] = ['cp-anon', 'cp-user'];
    const api = await t.start('serve');
    let worker = await t.start('work');
    const send = async (events: Record<string, unknown>[]) => {
      const res = await call(api.url, '/v1/events/batch', { body: { events } });
      expect(res.status).toBe(202);
      return res.body.ids as string[];
    };
    const many = (n: number, fields: Record<string, unknown>) =>
      Array.from({ length: n }, () => event(fields));

    // A's first events stored while PostgreSQL is up: nothing links A to U yet.
    const stored = await send([...many(5, { anonymousId: A }), ...many(5, { userId: 'cp-other-0' })]);
    await waitFor(
      async () =>
        (await count('SELECT count(*)::int AS n FROM events WHERE id = ANY($1::uuid[])', [stored])) === 10,
    );

    // PostgreSQL goes away: A's next events, the alias call and U's events go to the checkpoint.
    t.postgres.stop();
    await send([
      ...many(10, { anonymousId: A }),
      event({ type: 'alias', userId: U, metadata: { previousId: A } }),
      ...many(10, { userId: U }),
      ...many(20, { userId: 'cp-other-1', anonymousId: 'cp-other-anon' }),
    ]);
    await worker.waitForLog((l) => l.msg === 'batch' && Number(l.checkpointed) > 0, 30_000);
    await waitFor(async () => {
      const b = await call(api.url, '/health/buffer');
      return b.body.length === 0 && b.body.pending === 0;
    });
    await worker.kill9();
    t.postgres.start();

    // U's erasure completes before anyone replays the orphaned checkpoint: A is unknown then.
    const erase = await waitFor(async () => {
      const r = await call(api.url, `/v1/users/${U}/events`, { method: 'DELETE' });
      return r.status === 202 ? r.body : undefined;
    });
    await waitFor(
      async () => (await call(api.url, `/v1/dsar/${erase.requestId}`)).body.status === 'completed',
      30_000,
      'erasure completed',
    );
    expect(await count('SELECT count(*)::int AS n FROM events WHERE anonymous_id = $1', [A])).toBe(5);

    // A new worker replays the checkpoint: the alias call, dropped as U's, extends the erasure to A.
    worker = await t.start('work');
    await waitFor(
      async () =>
        (await count(`SELECT count(*)::int AS n FROM events WHERE user_id LIKE 'cp-other-%'`)) === 25,
      60_000,
      'the other subjects’ checkpointed events stored',
    );
    const done = await waitFor(
      async () => {
        const s = await call(api.url, `/v1/dsar/${erase.requestId}`);
        const left = await count(
          'SELECT count(*)::int AS n FROM events WHERE anonymous_id = $1 OR user_id = $2',
          [A, U],
        );
        return s.body.status === 'completed' && left === 0 ? s.body : undefined;
      },
      60_000,
      'the erasure reopened and completed for A',
    );
    // 5 + 10 of A's, the alias call and 10 of U's: deleted from the database or dropped on replay.
    expect(done.deleted.database + done.deleted.checkpoint).toBe(26);
    expect(done.deleted.checkpoint).toBeGreaterThanOrEqual(11);
    // The erased ids' links are gone; the other subjects' own link stays.
    expect(
      await count(
        'SELECT count(*)::int AS n FROM subject_links WHERE $1 IN (from_id, to_id) OR $2 IN (from_id, to_id)',
        [A, U],
      ),
    ).toBe(0);
    expect(await count('SELECT count(*)::int AS n FROM subject_links')).toBe(1);
    expect(await count(`SELECT count(*)::int AS n FROM events WHERE user_id LIKE 'cp-other-%'`)).toBe(25);
  });
});
