import { afterAll, beforeAll, describe, expect } from 'vitest';
import { stackTest } from '../helpers/fixtures.ts';
import type { TributaryProcess } from '../helpers/processes.ts';
import { type SourceApi, startSourceApi } from '../helpers/source-api.ts';
import {
  createSourceCall,
  createSourceDatabase,
  SOURCE_KEYS,
  type SourceDatabase,
  sourceState,
  storedOf,
} from '../helpers/sources.ts';
import type { Stack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * kill -9 of the process running a source, mid-run (ARCHITECTURE §15): its lease runs out
 * (SOURCE_LEASE_TTL_S = 2), another `work` process takes the source over from the last
 * committed position, and every record is stored exactly once — the batch buffered but not
 * yet committed is read again and answered as duplicates.
 */
const test = stackTest({
  workers: 2,
  env: {
    ...SOURCE_KEYS,
    SOURCE_POLL_MS: '100',
    SOURCE_LEASE_TTL_S: '2',
    BATCH_SIZE: '500',
    CLAIM_IDLE_MS: '1000',
  },
});

let db: SourceDatabase;
let api: SourceApi;
const ROWS = 30_000;
const RECORDS = 3_000;

beforeAll(async () => {
  db = await createSourceDatabase();
  await db.pool.query(
    `CREATE TABLE audit_rows (id bigserial PRIMARY KEY, at timestamptz(6) NOT NULL, action text NOT NULL, body text)`,
  );
  await db.pool.query(
    `INSERT INTO audit_rows (at, action, body)
     SELECT now() - interval '1 day' + g * interval '1 millisecond', 'row.written', repeat('x', 200)
       FROM generate_series(1, $1) g`,
    [ROWS],
  );
  api = await startSourceApi(RECORDS);
});
afterAll(async () => {
  await db?.drop();
  await api?.close();
});

type State = { runningOn: string | null; rowsRead: number; eventsAccepted: number; eventsDuplicate: number };
const stateOf = async (stack: Stack, id: string) => (await sourceState(stack, id)).state as State;

/** Kills the process running the source `kills` times once it is past each mark; returns what it saw. */
async function killRunners(stack: Stack, id: string, total: number, kills: number) {
  const takeovers: number[] = [];
  const holders: string[] = [];
  for (let k = 1; k <= kills; k++) {
    const mark = Math.floor((total * k) / (kills + 2));
    const running = await waitFor(
      async () => {
        const s = await stateOf(stack, id);
        return s.runningOn !== null && s.rowsRead >= mark ? s : undefined;
      },
      60_000,
      `the source running past ${mark}`,
      20,
    );
    const holder = running.runningOn as string;
    holders.push(holder);
    const victim = stack.workers.find((w) => holder.endsWith(`-${w.child.pid}`)) as TributaryProcess;
    expect(victim, `a worker named ${holder}`).toBeDefined();
    if (k === 1) {
      // The worst moment: a batch buffered, its position not yet committed. A row lock on the
      // source holds the runner's commit; it is killed while waiting for it.
      const lock = await stack.env.pool.connect();
      await lock.query('BEGIN');
      await lock.query('SELECT 1 FROM sources WHERE id = $1 FOR UPDATE', [id]);
      const waiting = await waitFor(
        async () => {
          const { rows } = await stack.env.pool.query<{ pid: number }>(
            `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE sources SET position%'`,
          );
          return rows[0];
        },
        30_000,
        'a commit waiting',
        20,
      );
      await victim.kill9();
      // The server would finish the dead client's statement once the lock is free, before it
      // notices the client is gone: end its session, as the server does when it notices.
      await stack.env.pool.query('SELECT pg_terminate_backend($1)', [waiting.pid]);
      await lock.query('ROLLBACK');
      lock.release();
    } else await victim.kill9();
    stack.workers.splice(stack.workers.indexOf(victim), 1);
    const killedAt = Date.now();
    await stack.addWorker();
    // Another process takes it over once the lease has run out.
    await waitFor(
      async () => {
        const s = await stateOf(stack, id);
        return s.runningOn !== null && s.runningOn !== holder;
      },
      30_000,
      'a takeover',
      20,
    );
    takeovers.push(Date.now() - killedAt);
  }
  return { takeovers, holders };
}

describe('kill -9 of a source runner mid-run', () => {
  test(`a table of ${ROWS} rows: stored exactly once through 3 kills and takeovers`, async ({ stack }) => {
    const started = Date.now();
    const res = await createSourceCall(stack, {
      kind: 'postgres',
      name: 'audit',
      service: 'audit',
      connection: db.url,
      table: 'audit_rows',
      cursorColumn: 'at',
      idColumn: 'id',
      type: 'audit.row',
      intervalSeconds: 1,
      maxBatchRows: 1_000,
    });
    expect(res.status).toBe(201);
    const id = res.body.id as string;
    const { takeovers, holders } = await killRunners(stack, id, ROWS, 3);
    await waitFor(async () => (await storedOf(stack, id)).rows >= ROWS, 120_000, 'every row stored', 250);
    const stored = await storedOf(stack, id);
    expect(stored).toEqual({ rows: ROWS, ids: ROWS });
    const { rows } = await stack.env.pool.query<{ n: number }>(
      `SELECT count(DISTINCT metadata->>'id')::int AS n FROM events WHERE key_id = $1`,
      [`source:${id}`],
    );
    expect(rows[0]?.n).toBe(ROWS);
    const state = await stateOf(stack, id);
    // The batch buffered before the first kill was read again and answered as duplicates; the
    // counts are those of committed batches, so it shows as read once, as duplicates.
    expect(state.eventsDuplicate).toBeGreaterThan(0);
    expect(state.rowsRead).toBe(ROWS);
    expect(state.eventsAccepted + state.eventsDuplicate).toBe(ROWS);
    expect(new Set(holders).size).toBe(3);
    console.info(
      `[source-kill] postgres: ${ROWS} rows, stored ${stored.rows} (distinct ${stored.ids}), kills 3, ` +
        `rows read ${state.rowsRead}, duplicates answered ${state.eventsDuplicate} (a batch buffered, not committed, read again), ` +
        `takeover after kill ${takeovers.join(' / ')} ms, all stored after ${Date.now() - started} ms`,
    );
  });

  test(`an HTTP API of ${RECORDS} records in pages of 25: stored exactly once through 2 kills`, async ({
    stack,
  }) => {
    // Slow pages, so a run lasts long enough to be killed in the middle.
    api.faults.set(
      '/open/offset',
      Array.from({ length: RECORDS / 25 }, () => ({ delayMs: 40 })),
    );
    const res = await createSourceCall(stack, {
      kind: 'http',
      name: 'tickets',
      service: 'helpdesk',
      url: `${api.url}/open/offset`,
      dataPath: 'data.items',
      pagination: { type: 'offset', param: 'offset', limitParam: 'limit', limit: 25 },
      idField: 'id',
      typeField: 'kind',
      timestampField: 'created_at',
      intervalSeconds: 1,
    });
    expect(res.status).toBe(201);
    const id = res.body.id as string;
    const { takeovers } = await killRunners(stack, id, RECORDS, 2);
    await waitFor(
      async () => (await storedOf(stack, id)).rows >= RECORDS,
      120_000,
      'every record stored',
      250,
    );
    const stored = await storedOf(stack, id);
    expect(stored).toEqual({ rows: RECORDS, ids: RECORDS });
    const state = await stateOf(stack, id);
    expect(state.eventsDuplicate).toBeGreaterThan(0);
    expect(state.eventsAccepted + state.eventsDuplicate).toBe(RECORDS);
    console.info(
      `[source-kill] http: ${RECORDS} records, stored ${stored.rows} (distinct ${stored.ids}), kills 2, ` +
        `records read ${state.rowsRead}, duplicates answered ${state.eventsDuplicate}, takeover after kill ${takeovers.join(' / ')} ms`,
    );
  });
});
