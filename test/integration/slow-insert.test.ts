import pg from 'pg';
import { describe, expect } from 'vitest';
import { stackTest } from '../helpers/fixtures.ts';
import { call, event } from '../helpers/stack.ts';
import { sleep, waitFor } from '../helpers/wait.ts';

// Entries are reclaimed after 1 s idle and dead-lettered after more than 2 deliveries.
// Many batches may be in flight, so the worker keeps reading (and reclaiming) meanwhile.
const test = stackTest({
  workerEnv: {
    CLAIM_IDLE_MS: '1000',
    MAX_DELIVERIES: '2',
    INSERT_CONCURRENCY: '16',
    BATCH_MAX_WAIT_MS: '50',
  },
});

describe('a batch that takes long to store', () => {
  test('is taken over whole when the worker dies while its inserts wait on a lock: every row stored, no dead letter', async ({
    stack,
  }) => {
    // Hold every insert behind a table lock, with the breaker closed (waiting is no error).
    const locker = new pg.Client({ connectionString: stack.env.databaseUrl });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
    const worker = await stack.addWorker();
    const res = await call(stack.url, '/v1/events/batch', {
      body: { events: Array.from({ length: 300 }, () => event({ userId: 'slow' })) },
    });
    expect(res.body.accepted).toBe(300);
    // Four seconds of trickling traffic with the batch in flight (the worker's loop goes on
    // reading and reclaiming); then the worker dies holding it all. A duration: the scenario.
    const until = Date.now() + 4_000;
    let trickled = 0;
    while (Date.now() < until) {
      if ((await call(stack.url, '/v1/events', { body: event({ userId: 'trickle' }) })).status === 202)
        trickled++;
      await sleep(100);
    }
    await worker.kill9();
    await locker.query('ROLLBACK');
    await locker.end();

    // A new worker takes the entries over (one more delivery) and stores them all.
    await stack.addWorker();
    await waitFor(
      async () =>
        (await stack.env.pool.query("SELECT 1 FROM events WHERE user_id IN ('slow', 'trickle')")).rowCount ===
        300 + trickled,
      30_000,
      'every row',
    );
    const buffer = await waitFor(async () => {
      const b = await call(stack.url, '/health/buffer');
      return b.body.pending === 0 && b.body.length === 0 ? b.body : null;
    });
    expect(buffer.deadLetters).toBe(0);
  });
});
