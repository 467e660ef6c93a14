import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CatalogColumn,
  expectAppendTablesMatch,
  expectDailyCountsMatch,
  expectEventTablesMatch,
  expectTraitsMatch,
  expectTypedColumnsHold,
  tableDigests,
} from '../helpers/mat-oracle.ts';
import { segmentTraffic, sendBatches } from '../helpers/mat-traffic.ts';
import { call, type Stack, startStack, waitFor } from '../helpers/stack.ts';

/**
 * Materialisations (ARCHITECTURE §17) against real PostgreSQL, fed by Segment traffic through
 * the HTTP API: every table compared with an oracle computed from `events`, the typed columns
 * checked value by value, an incremental build compared with a rebuild, erasure followed into
 * every table.
 */
const SERVICE = 'mat-web';
const SCHEMA = 'mat';
const prefix = `m${randomUUID().slice(0, 6)}`;
let stack: Stack;
let writeKey: string;

beforeAll(async () => {
  stack = await startStack({
    workers: 1,
    env: { MATERIALIZE_POLL_MS: '100', MATERIALIZE_BATCH_ROWS: '700' },
  });
  const key = await call(stack.url, '/v1/admin/keys', {
    body: { name: 'segment', scopes: ['ingest'], services: [SERVICE], rateLimitPerMinute: 1_000_000 },
  });
  expect(key.status).toBe(201);
  writeKey = key.body.key;
});
afterAll(async () => {
  await stack?.close();
});

const storedCount = async () =>
  Number((await stack.env.pool.query<{ n: string }>('SELECT count(*) AS n FROM events')).rows[0]?.n);

/** Waits until every stored event is applied (nothing pending), and returns the state. */
async function caughtUp(name: string, what = 'materialisation caught up') {
  const stored = await storedCount();
  // biome-ignore lint/suspicious/noExplicitAny: the API's body, checked field by field
  let last: any;
  try {
    return await waitFor(
      async () => {
        const m = await call(stack.url, `/v1/admin/materializations/${name}`);
        expect(m.status).toBe(200);
        last = m.body;
        const ready =
          last.state === 'running' &&
          last.lag.pending === 0 &&
          last.lag.staleDays === 0 &&
          last.rebuildRequestedAt === null &&
          last.position !== null;
        return ready && (await storedCount()) === stored ? last : undefined;
      },
      45_000,
      what,
      100,
    );
  } catch (err) {
    const { columns: _, ...state } = last ?? {};
    throw new Error(`${(err as Error).message}; state: ${JSON.stringify(state)}`);
  }
}

async function waitStored(n: number) {
  await waitFor(async () => (await storedCount()) === n, 30_000, `${n} events stored`);
}

describe('materialisations', () => {
  const calls = segmentTraffic({ seed: 7, users: 12, eventNames: 1000, wideProperties: 260, prefix });
  const distinct = new Set(calls.map((c) => c.messageId)).size;
  const half = Math.floor(calls.length / 2);
  let incremental: Record<string, string>;
  let columns: CatalogColumn[];

  it('refuses a bad configuration with the field at fault', async () => {
    for (const body of [
      { destination: { kind: 'postgres', schema: 'public' } },
      { destination: { kind: 'postgres', schema: 'tributary_stage_x' } },
      { destination: { kind: 'duckdb', path: 'relative.duckdb' } },
      { destination: { kind: 'parquet', prefix: 'events/mat' } },
      { destination: { kind: 'parquet', prefix: '../up' } },
      { eventTables: { max: -1 } },
      { nope: 1 },
    ]) {
      const res = await call(stack.url, '/v1/admin/materializations/bad', { method: 'PUT', body });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    expect((await call(stack.url, '/v1/admin/materializations/nope')).status).toBe(404);
  });

  it('builds from stored events, then follows new ones: every table equals its oracle', async () => {
    await sendBatches(stack, writeKey, calls.slice(0, half));
    const firstHalf = new Set(calls.slice(0, half).map((c) => c.messageId)).size;
    await waitStored(firstHalf);
    const put = await call(stack.url, '/v1/admin/materializations/main', {
      method: 'PUT',
      body: {
        destination: { kind: 'postgres', schema: SCHEMA },
        eventTables: { max: 100 },
        promoteMaxColumns: 120,
      },
    });
    expect(put.status).toBe(201);
    await caughtUp('main', 'first build');
    await sendBatches(stack, writeKey, calls.slice(half));
    await waitStored(distinct);
    await caughtUp('main', 'second half applied');
    // Values that no longer fit the columns the first ones made: a string where every order_id
    // was a whole number, an object where a trait was a string.
    const late = [1, 2, 3].map((k) => ({
      type: 'track',
      messageId: `${prefix}-late-${k}`,
      userId: `${prefix}-u1`,
      event: 'Order Completed',
      properties: { order_id: `abc-${k}`, total: 3 },
      timestamp: new Date().toISOString(),
    }));
    const lateIdentify = {
      type: 'identify',
      messageId: `${prefix}-late-identify`,
      userId: `${prefix}-u2`,
      traits: { email: { primary: 'x@example.com' } },
      timestamp: new Date().toISOString(),
    };
    await sendBatches(stack, writeKey, [...late, lateIdentify]);
    await waitStored(distinct + 4);
    const state = await caughtUp('main');
    expect(state.eventsApplied).toBeGreaterThanOrEqual(distinct + 4);

    const pool = stack.env.pool;
    const counts = await expectAppendTablesMatch(pool, SCHEMA);
    // 100 event tables at most: Order Completed, Wide Event and the first Event N seen.
    expect(Object.keys(state.eventTables)).toHaveLength(100);
    expect(new Set(Object.values(state.eventTables)).size).toBe(100);
    await expectEventTablesMatch(pool, SCHEMA, state.eventTables);
    const users = await expectTraitsMatch(pool, SCHEMA, 'users');
    const accounts = await expectTraitsMatch(pool, SCHEMA, 'accounts');
    const days = await expectDailyCountsMatch(pool, SCHEMA);
    columns = state.columns;
    const conflicts = await expectTypedColumnsHold(pool, SCHEMA, columns);
    console.log(
      `[materialize] ${distinct} events: ${JSON.stringify(counts)}, ${users} users, ${accounts} accounts, ${days} daily rows, ` +
        `${Object.keys(state.eventTables).length} event tables, ${columns.length} typed columns, ${conflicts} conflicts`,
    );
    expect(conflicts).toBeGreaterThan(0);
    // Rows per table, from PostgreSQL's statistics: every table listed.
    for (const table of ['tracks', 'pages', 'users', 'daily_counts', ...Object.values(state.eventTables)]) {
      expect(state.tables[table as string]).toBeTypeOf('number');
    }

    // Names: ≤ 63 bytes, snake_case, never a fixed column, collisions kept apart.
    const names = columns.map((c) => `${c.table}.${c.column}`);
    expect(new Set(names).size).toBe(names.length);
    for (const c of columns) {
      expect(Buffer.byteLength(c.column)).toBeLessThanOrEqual(63);
      expect(c.column).toMatch(/^[a-z0-9_]+$/);
      expect(['id', 'user_id', 'properties', 'select']).not.toContain(c.column);
    }
    const order = state.eventTables['Order Completed'];
    const orderColumns = columns.filter((c) => c.table === order);
    for (const path of [
      ['Order Id'],
      ['order_id'],
      ['orderId'],
      ['id'],
      ['shipping', 'cost', 'amount'],
      ['products'],
    ]) {
      expect(orderColumns.find((c) => JSON.stringify(c.path) === JSON.stringify(path))).toBeDefined();
    }
    // The wide event's table stops at the cap; the rest stays in properties.
    expect(columns.filter((c) => c.table === state.eventTables['Wide Event'])).toHaveLength(120);
    incremental = await tableDigests(pool, SCHEMA);
  }, 120_000);

  it('a rebuild gives the same tables (widened columns aside), swapped in at once', async () => {
    const before = await call(stack.url, '/v1/admin/materializations/main');
    const rebuild = await call(stack.url, '/v1/admin/materializations/main/rebuild', { method: 'POST' });
    expect(rebuild.status).toBe(202);
    expect(rebuild.body.rebuildRequestedAt).not.toBeNull();
    const after = await caughtUp('main', 'rebuilt');
    expect(after.lastRebuildAt).not.toBe(before.body.lastRebuildAt);
    const pool = stack.env.pool;
    const rebuilt = await tableDigests(pool, SCHEMA);
    const kinds = (cols: CatalogColumn[]) => new Map(cols.map((c) => [`${c.table}.${c.column}`, c.type]));
    const was = kinds(columns);
    const now = kinds(after.columns);
    // A rebuild creates each column at its widest type: those tables differ in their cells only.
    const widened = new Set(
      after.columns
        .filter((c: CatalogColumn) => was.get(`${c.table}.${c.column}`) !== c.type)
        .map((c: CatalogColumn) => c.table),
    );
    expect([...now.keys()].sort()).toEqual([...was.keys()].sort());
    for (const table of Object.keys(incremental)) {
      if (!widened.has(table))
        expect({ table, digest: rebuilt[table] }).toEqual({ table, digest: incremental[table] });
    }
    await expectAppendTablesMatch(pool, SCHEMA);
    await expectTraitsMatch(pool, SCHEMA, 'users');
    await expectDailyCountsMatch(pool, SCHEMA);
    // After the rebuild no value conflicts any more where its column was widened.
    const conflicts = await expectTypedColumnsHold(pool, SCHEMA, after.columns);
    console.log(
      `[materialize] rebuild: ${widened.size} tables with widened columns, ${conflicts} conflicts left`,
    );
    expect(await pool.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'mat__rebuild'`)).toMatchObject({
      rowCount: 0,
    });
  }, 90_000);

  it('erasure of a subject known by user id and anonymous id leaves nothing in any table, and a rebuild brings nothing back', async () => {
    const userId = `${prefix}-u3`;
    const ids = [userId, `${prefix}-a3`, `${prefix}-old3`];
    const pool = stack.env.pool;
    const holding = async () => {
      const tables = await pool.query<{ t: string }>(
        `SELECT DISTINCT table_name AS t FROM information_schema.columns WHERE table_schema = $1 AND column_name IN ('user_id', 'anonymous_id')`,
        [SCHEMA],
      );
      let n = 0;
      for (const { t } of tables.rows) {
        const cols = await pool.query<{ c: string }>(
          `SELECT column_name AS c FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name IN ('user_id', 'anonymous_id', 'previous_id')`,
          [SCHEMA, t],
        );
        const where = cols.rows.map((c) => `"${c.c}" = ANY($1::text[])`).join(' OR ');
        const r = await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${SCHEMA}."${t}" WHERE ${where}`,
          [ids],
        );
        n += r.rows[0]?.n ?? 0;
      }
      return n;
    };
    const before = await holding();
    expect(before).toBeGreaterThan(0);
    const erase = await call(stack.url, `/v1/users/${userId}/events`, { method: 'DELETE' });
    expect(erase.status).toBe(202);
    const done = await waitFor(
      async () => {
        const s = await call(stack.url, `/v1/dsar/${erase.body.requestId}`);
        return s.body.status === 'completed' ? s.body : undefined;
      },
      60_000,
      'erasure completed',
    );
    expect(done.deleted.materialized).toBeGreaterThanOrEqual(before);
    expect(await holding()).toBe(0);
    await expectDailyCountsMatch(pool, SCHEMA);
    expect(
      (await call(stack.url, '/v1/admin/materializations/main/rebuild', { method: 'POST' })).status,
    ).toBe(202);
    await caughtUp('main', 'rebuilt after the erasure');
    expect(await holding()).toBe(0);
    await expectAppendTablesMatch(pool, SCHEMA);
  }, 120_000);

  it('deleting a materialisation drops its schema', async () => {
    expect((await call(stack.url, '/v1/admin/materializations/main', { method: 'DELETE' })).status).toBe(204);
    const left = await stack.env.pool.query(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [SCHEMA]);
    expect(left.rowCount).toBe(0);
    expect((await call(stack.url, '/v1/admin/materializations/main')).status).toBe(404);
  });
});
