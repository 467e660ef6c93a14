import { describe, expect } from 'vitest';
import { FAST_BREAKER, privateDatabaseTest } from '../helpers/fixtures.ts';
import { call, event, waitFor } from '../helpers/stack.ts';

const test = privateDatabaseTest({
  ...FAST_BREAKER,
  CHECKPOINT_SPILL_THRESHOLD: '0',
  RETENTION_SCHEDULE: 'off',
  DSAR_LOCK_TTL_MS: '3000',
});

describe('erasure of events held in a disk checkpoint', () => {
  test('drops the subject’s checkpointed events when they are replayed after the request, and counts them', async ({
    testEnv: t,
  }) => {
    const count = async (sql: string, params: unknown[]) =>
      (await t.pool.query<{ n: number }>(sql, params)).rows[0]?.n ?? -1;
    const api = await t.start('serve');
    let worker = await t.start('work');
    const send = async (events: Record<string, unknown>[]) => {
      const res = await call(api.url, '/v1/events/batch', { body: { events } });
      expect(res.status).toBe(202);
      return res.body.ids as string[];
    };
    const subject = (n: number) => Array.from({ length: n }, () => event({ userId: 'cp-subject' }));
    const others = (n: number) => Array.from({ length: n }, (_, i) => event({ userId: `cp-other-${i % 4}` }));

    // 30 of the subject's events and 30 others stored while PostgreSQL is up.
    const stored = await send([...subject(30), ...others(30)]);
    await waitFor(
      async () =>
        (await count('SELECT count(*)::int AS n FROM events WHERE id = ANY($1::uuid[])', [stored])) === 60,
    );

    // PostgreSQL goes away: the next 40 + 40 end up in the worker's disk checkpoint.
    t.postgres.stop();
    await send([...subject(40), ...others(40)]);
    await worker.waitForLog((l) => l.msg === 'batch' && Number(l.checkpointed) > 0, 30_000);
    await waitFor(async () => {
      const b = await call(api.url, '/health/buffer');
      return b.body.length === 0 && b.body.pending === 0;
    });
    // The worker dies holding the checkpoint; PostgreSQL comes back.
    await worker.kill9();
    t.postgres.start();

    const erase = await waitFor(async () => {
      const r = await call(api.url, '/v1/users/cp-subject/events', { method: 'DELETE' });
      return r.status === 202 ? r.body : undefined;
    });
    await waitFor(
      async () => (await call(api.url, `/v1/dsar/${erase.requestId}`)).body.status === 'completed',
      30_000,
      'erasure completed',
    );

    // A new worker takes over the checkpoint and replays it: the subject's events are dropped.
    worker = await t.start('work');
    await waitFor(
      async () =>
        (await count(`SELECT count(*)::int AS n FROM events WHERE user_id LIKE 'cp-other-%'`, [])) === 70,
      60_000,
      'the other subjects’ checkpointed events stored',
    );
    const status = await waitFor(async () => {
      const s = await call(api.url, `/v1/dsar/${erase.requestId}`);
      return s.body.deleted.checkpoint === 40 ? s.body : undefined;
    });
    expect(status.deleted).toEqual({
      database: 30,
      buffer: 0,
      checkpoint: 40,
      archive: 0,
      deadLetter: 0,
      materialized: 0,
    });
    expect(await count(`SELECT count(*)::int AS n FROM events WHERE user_id = 'cp-subject'`, [])).toBe(0);
  });
});
