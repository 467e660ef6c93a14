import pg from 'pg';
import { describe, expect } from 'vitest';
import { stackTest } from '../helpers/fixtures.ts';
import { call, event } from '../helpers/stack.ts';
import { expectStoredExactlyOnce } from '../helpers/stored-once.ts';
import { sleep, waitFor } from '../helpers/wait.ts';

// The breaker's second and third triggers provoked for real, each in a stack of its own
// (the first, connection failures, is database-outage.test.ts): a lock held on `events` past
// BREAKER_SLOW_INSERT_MS, and a share of inserts failing (a statement trigger raising an
// error for about 40 % of them). Each time the trigger is named in /health/database and the
// worker's log, and every accepted event is stored once when the cause is gone.

const BREAKER = {
  BREAKER_HALF_OPEN_AFTER_MS: '300',
  BREAKER_MAX_HALF_OPEN_AFTER_MS: '1000',
  CLAIM_IDLE_MS: '3000',
};

const send = async (url: string, userId: string, n: number) => {
  const ids = new Set<string>();
  for (let i = 0; i < n; i += 50) {
    const events = Array.from({ length: Math.min(50, n - i) }, () => event({ userId }));
    const res = await call(url, '/v1/events/batch', { body: { events } });
    expect(res.body.accepted).toBe(events.length);
    for (const e of events) ids.add(e.id as string);
  }
  return ids;
};

const openedBy = (url: string, trigger: string) =>
  waitFor(
    async () => {
      const res = await call(url, '/health/database');
      return res.body.circuitBreakerTrigger === trigger && res.body.circuitBreaker !== 'closed'
        ? res.body
        : null;
    },
    20_000,
    `breaker opened by ${trigger}`,
    50,
  );

const closed = (url: string) =>
  waitFor(
    async () => ((await call(url, '/health/database')).body.circuitBreaker === 'closed' ? true : null),
    30_000,
    'breaker closed',
  );

// No worker of the stack's own: each test starts one with its settings and stops it.
const test = stackTest({ workers: 0 });

describe('slow inserts (BREAKER_SLOW_INSERT_MS)', () => {
  test('a lock held on events opens the breaker while inserts wait on it; all stored once after', async ({
    stack,
  }) => {
    const worker = await stack.addWorker({
      ...BREAKER,
      BREAKER_SLOW_INSERT_MS: '300',
      BATCH_MAX_WAIT_MS: '20',
    });
    const locker = new pg.Client({ connectionString: stack.env.databaseUrl });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
    const lockedAt = Date.now();
    const ids = new Set<string>();
    let health: Awaited<ReturnType<typeof openedBy>>;
    try {
      // Traffic goes on while the lock is held (small batches every 100 ms), so inserts keep
      // starting and waiting; the breaker must open while they wait.
      let open = false;
      const opened = openedBy(stack.url, 'slow_insert').finally(() => {
        open = true;
      });
      while (!open && Date.now() - lockedAt < 20_000) {
        for (const id of await send(stack.url, 'slow-lock', 20)) ids.add(id);
        await sleep(100);
      }
      health = await opened;
    } finally {
      // Released only now: the breaker opened while the lock was held.
      await locker.query('ROLLBACK');
      await locker.end();
    }
    const openedAfterMs = Date.now() - lockedAt;
    const line = await worker.waitForLog((l) => l.msg === 'database circuit breaker opened', 1_000);
    expect(line.trigger).toBe('slow_insert');
    expect(String(line.reason)).toContain('BREAKER_SLOW_INSERT_MS');
    expect(health.workers[0].breakerTrigger).toBe('slow_insert');
    await closed(stack.url);
    await expectStoredExactlyOnce(stack.env.pool, ids);
    await worker.stop();
    console.log(
      `[breaker] slow_insert: opened ${openedAfterMs} ms after the lock was taken (limit 300 ms); ${ids.size} stored once`,
    );
  });
});

describe('an error rate (BREAKER_ERROR_RATE)', () => {
  test('about 40 % of inserts failing opens it by error_rate (not connection); all stored once after', async ({
    stack,
  }) => {
    const { pool } = stack.env;
    await pool.query('TRUNCATE events');
    await pool.query(`
      CREATE FUNCTION flaky_insert() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF random() < 0.4 THEN RAISE EXCEPTION 'flaky insert' USING ERRCODE = 'XX000'; END IF;
        RETURN NULL;
      END $$;
      CREATE TRIGGER flaky_insert BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION flaky_insert();
    `);
    const worker = await stack.addWorker({
      ...BREAKER,
      BREAKER_ERROR_RATE: '0.2',
      BREAKER_ERROR_WINDOW_MS: '10000',
      // Many small inserts, so the window sees enough calls.
      BATCH_SIZE: '20',
      BATCH_MAX_WAIT_MS: '5',
    });
    const ids = await send(stack.url, 'flaky', 1_500);
    const health = await openedBy(stack.url, 'error_rate');
    expect(health.workers[0].breakerReason).toContain('flaky insert');
    const opens = await call(stack.url, '/health/database');
    expect(opens.body.circuitBreakerTrigger).toBe('error_rate');
    await pool.query('DROP TRIGGER flaky_insert ON events; DROP FUNCTION flaky_insert()');
    await closed(stack.url);
    await expectStoredExactlyOnce(pool, ids);
    const failures = worker.logs.filter((l) => l.msg === 'batch insert failed').length;
    console.log(
      `[breaker] error_rate: ${failures} inserts failed before it opened or while it probed; 1,500 stored once`,
    );
  });
});
