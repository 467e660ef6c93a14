import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ADMIN_KEY } from '../helpers/env.ts';
import { stackTest } from '../helpers/fixtures.ts';
import {
  createSourceCall,
  createSourceDatabase,
  SOURCE_KEYS,
  type SourceDatabase,
  sourceState,
  storedOf,
} from '../helpers/sources.ts';
import { call, sleep, waitFor } from '../helpers/stack.ts';

/**
 * A PostgreSQL table source (ARCHITECTURE §15) against a real second database made here:
 * every row becomes one event, changed and new rows are picked up, a paused source reads
 * nothing, the configuration is checked at create time with the field named, and the
 * connection string (with its password) shows in no answer and no log line.
 */
const test = stackTest({ workers: 1, env: { ...SOURCE_KEYS, SOURCE_POLL_MS: '100' } });

let db: SourceDatabase;
const ROWS = 2_500;

beforeAll(async () => {
  db = await createSourceDatabase();
  await db.pool.query(`
    CREATE TABLE orders (
      id bigserial PRIMARY KEY,
      updated_at timestamptz(6) NOT NULL DEFAULT clock_timestamp(),
      kind text NOT NULL,
      customer text,
      total numeric(12, 2),
      paid_on date,
      payload jsonb,
      raw bytea
    )`);
  // Many rows share one updated_at: the keyset's id breaks the ties.
  await db.pool.query(
    `INSERT INTO orders (updated_at, kind, customer, total, paid_on, payload, raw)
     SELECT '2026-12-01 10:00:00.123456+00'::timestamptz + (g / 10) * interval '1 microsecond',
            CASE WHEN g % 2 = 0 THEN 'order.placed' ELSE 'order.paid' END,
            'customer-' || (g % 50), g * 1.25, DATE '2026-12-01', jsonb_build_object('n', g), '\\x0102'
       FROM generate_series(1, $1) g`,
    [ROWS],
  );
});
afterAll(async () => {
  await db?.drop();
});

const ordersSource = (overrides: Record<string, unknown> = {}) => ({
  kind: 'postgres',
  name: `orders-${Math.random().toString(36).slice(2, 8)}`,
  service: 'shop',
  connection: db.url,
  table: 'public.orders',
  cursorColumn: 'updated_at',
  idColumn: 'id',
  typeColumn: 'kind',
  userIdColumn: 'customer',
  intervalSeconds: 1,
  ...overrides,
});

describe('PostgreSQL table source', () => {
  test('every row becomes one event; changed and new rows are read again; state shows where it is', async ({
    stack,
  }) => {
    const created = await createSourceCall(stack, ordersSource({ maxBatchRows: 700 }));
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect(created.body).toMatchObject({
      kind: 'postgres',
      service: 'shop',
      paused: false,
      secrets: ['connection'],
      settings: { table: 'public.orders', cursorColumn: 'updated_at', idColumn: 'id', intervalSeconds: 1 },
    });
    expect(JSON.stringify(created.body)).not.toContain(db.password);
    expect(created.body.settings.connection).toBeUndefined();

    await waitFor(async () => (await storedOf(stack, id)).rows === ROWS, 60_000, 'every row stored');
    expect(await storedOf(stack, id)).toEqual({ rows: ROWS, ids: ROWS });
    const { rows: sample } = await stack.env.pool.query(
      `SELECT type, user_id, occurred_at, metadata FROM events WHERE key_id = $1 AND metadata->>'id' = '7'`,
      [`source:${id}`],
    );
    expect(sample).toHaveLength(1);
    expect(sample[0]).toMatchObject({ type: 'order.paid', user_id: 'customer-7' });
    // The row's columns as metadata; timestamps and bytes as PostgreSQL prints them, exactly.
    expect(sample[0].metadata).toMatchObject({
      id: '7',
      kind: 'order.paid',
      total: '8.75',
      paid_on: '2026-12-01',
      payload: { n: 7 },
      raw: '\\x0102',
      updated_at: '2026-12-01 10:00:00.123456+00',
    });
    expect((sample[0].occurred_at as Date).toISOString()).toBe('2026-12-01T10:00:00.123Z');

    // Changed rows are new events (a new cursor value); new rows are read too.
    await db.pool.query(`UPDATE orders SET updated_at = clock_timestamp(), total = 1 WHERE id <= 10`);
    await db.pool.query(
      `INSERT INTO orders (kind, customer) SELECT 'order.placed', 'late' FROM generate_series(1, 5)`,
    );
    await waitFor(async () => (await storedOf(stack, id)).rows === ROWS + 15, 30_000, 'changes stored');
    const state = await sourceState(stack, id);
    expect(state.state).toMatchObject({
      rowsRead: ROWS + 15,
      eventsAccepted: ROWS + 15,
      eventsRejected: 0,
      failures: 0,
      lastError: null,
      position: { id: String(ROWS + 5) },
    });
    expect((state.state as { lastSuccessAt: string | null }).lastSuccessAt).not.toBeNull();

    // Listed too, with no secret.
    const list = await call(stack.url, '/v1/admin/sources', { key: ADMIN_KEY });
    expect(list.body.sources.map((s: { id: string }) => s.id)).toContain(id);
    expect(JSON.stringify(list.body)).not.toContain(db.password);

    // Rejected records are counted and explained without their values; the cursor moves on.
    await db.pool.query(`INSERT INTO orders (kind, customer) VALUES ('', 'nobody')`);
    await waitFor(
      async () => ((await sourceState(stack, id)).state as { eventsRejected: number }).eventsRejected === 1,
      30_000,
      'a rejected record',
    );
    const rejected = (await sourceState(stack, id)).state as { lastRejection: Record<string, unknown> };
    expect(rejected.lastRejection).toMatchObject({
      code: 'invalid_event',
      details: [{ path: 'kind', code: 'missing_type' }],
    });
    expect(JSON.stringify(rejected.lastRejection)).not.toContain('nobody');
    await call(stack.url, `/v1/admin/sources/${id}`, { method: 'DELETE', key: ADMIN_KEY });
  });

  test('a paused source reads nothing until it is resumed', async ({ stack }) => {
    await db.pool.query(`CREATE TABLE tickets (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())`);
    await db.pool.query(`INSERT INTO tickets (id) SELECT g FROM generate_series(1, 20) g`);
    const created = await createSourceCall(
      stack,
      ordersSource({
        table: 'tickets',
        cursorColumn: 'at',
        typeColumn: undefined,
        type: 'ticket',
        userIdColumn: undefined,
        paused: true,
      }),
    );
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect(created.body.paused).toBe(true);
    // Several intervals and polls: nothing is read.
    await sleep(3_000);
    expect(await storedOf(stack, id)).toEqual({ rows: 0, ids: 0 });
    expect(((await sourceState(stack, id)).state as { rowsRead: number }).rowsRead).toBe(0);

    const resumed = await call(stack.url, `/v1/admin/sources/${id}`, {
      method: 'PATCH',
      body: { paused: false },
      key: ADMIN_KEY,
    });
    expect(resumed.status).toBe(200);
    expect(resumed.body.paused).toBe(false);
    await waitFor(async () => (await storedOf(stack, id)).rows === 20, 30_000, 'rows after resume');

    // Paused again: new rows wait.
    await call(stack.url, `/v1/admin/sources/${id}`, {
      method: 'PATCH',
      body: { paused: true },
      key: ADMIN_KEY,
    });
    await db.pool.query(`INSERT INTO tickets (id) SELECT g FROM generate_series(21, 30) g`);
    await sleep(3_000);
    expect((await storedOf(stack, id)).rows).toBe(20);

    // Read again from the start: the rows already stored stay single.
    const reset = await call(stack.url, `/v1/admin/sources/${id}`, {
      method: 'PATCH',
      body: { paused: false, resetPosition: true },
      key: ADMIN_KEY,
    });
    expect(reset.body.state.position).toBeNull();
    await waitFor(
      async () => ((await sourceState(stack, id)).state as { rowsRead: number }).rowsRead >= 50,
      30_000,
      'the table read again',
    );
    await waitFor(async () => (await storedOf(stack, id)).rows >= 30, 30_000, 'the new rows stored');
    expect(await storedOf(stack, id)).toEqual({ rows: 30, ids: 30 });
    const state = (await sourceState(stack, id)).state as { eventsDuplicate: number };
    expect(state.eventsDuplicate).toBe(20);
  });

  test('a configuration is checked at create time: the field is named, nothing is stored', async ({
    stack,
  }) => {
    const cases: [Record<string, unknown>, number, string, string][] = [
      [{ table: undefined }, 400, 'invalid_request', 'table'],
      [{ typeColumn: 'kind', type: 'x' }, 400, 'invalid_request', 'typeColumn'],
      [{ connection: 'mysql://x' }, 400, 'invalid_request', 'connection'],
      [{ table: 'nope' }, 400, 'source_unreadable', 'table'],
      [{ cursorColumn: 'missing' }, 400, 'source_unreadable', 'cursorColumn'],
      [{ cursorColumn: 'id' }, 400, 'source_unreadable', 'cursorColumn'],
      [
        { connection: db.url.replace(db.name, 'tributary_test_none') },
        400,
        'source_unreachable',
        'connection',
      ],
      [{ connection: 'postgres://postgres:secretpw@127.0.0.1:1/x' }, 400, 'source_unreachable', 'connection'],
    ];
    const listed = async () =>
      ((await call(stack.url, '/v1/admin/sources', { key: ADMIN_KEY })).body.sources as unknown[]).length;
    const before = await listed();
    for (const [overrides, status, code, path] of cases) {
      const res = await createSourceCall(stack, ordersSource(overrides));
      expect({ overrides, status: res.status, code: res.body.error.code }).toEqual({
        overrides,
        status,
        code,
      });
      expect(res.body.error.details.map((d: { path: string }) => d.path)).toContain(path);
      expect(JSON.stringify(res.body)).not.toContain(db.password);
      expect(JSON.stringify(res.body)).not.toContain('secretpw');
    }
    expect(await listed()).toBe(before);
  });

  test('the dry run shows the columns, an estimate and the first rows as events, storing nothing', async ({
    stack,
  }) => {
    const res = await call(stack.url, '/v1/admin/sources/test', {
      method: 'POST',
      body: ordersSource(),
      key: ADMIN_KEY,
    });
    expect(res.status).toBe(200);
    expect(res.body.reachable).toBe(true);
    expect(res.body.fields).toContainEqual({ name: 'updated_at', type: 'timestamp(6) with time zone' });
    expect(res.body.estimatedRecords).toBeGreaterThan(0);
    expect(res.body.results).toHaveLength(10);
    expect(res.body.results[0]).toMatchObject({
      status: 'accepted',
      event: { service: 'shop', type: 'order.paid' },
    });
    const down = await call(stack.url, '/v1/admin/sources/test', {
      method: 'POST',
      body: ordersSource({ connection: 'postgres://postgres:secretpw@127.0.0.1:1/x' }),
      key: ADMIN_KEY,
    });
    expect(down.body).toMatchObject({
      reachable: false,
      error: { code: 'source_unreachable', field: 'connection' },
    });
    expect(JSON.stringify(down.body)).not.toContain('secretpw');
  });

  test('no log line of any process holds the connection string or its password', async ({ stack }) => {
    const lines = [...stack.api.logs, ...stack.workers.flatMap((w) => w.logs)].map((l) => JSON.stringify(l));
    expect(lines.length).toBeGreaterThan(10);
    expect(lines.filter((l) => l.includes(db.password) || l.includes('secretpw'))).toEqual([]);
  });
});
