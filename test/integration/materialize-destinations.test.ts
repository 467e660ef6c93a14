import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect } from 'vitest';
import { createObjectStore, type ObjectStore } from '../../src/archive/object-store.ts';
import { stagingSchema } from '../../src/materialize/spec.ts';
import { BASE_DATABASE_URL } from '../helpers/env.ts';
import { archiveStackTest } from '../helpers/fixtures.ts';
import {
  duckdbSets,
  parquetObjectsMentioning,
  parquetSets,
  postgresSets,
  type TableSets,
} from '../helpers/mat-destinations.ts';
import { expectAppendTablesMatch, expectDailyCountsMatch, expectTraitsMatch } from '../helpers/mat-oracle.ts';
import { segmentTraffic, sendBatches } from '../helpers/mat-traffic.ts';
import { call, type Stack, waitFor } from '../helpers/stack.ts';

/**
 * Materialisations into the destinations outside the service's own schema (ARCHITECTURE
 * §17): another PostgreSQL database, a DuckDB file and Hive-partitioned Parquet objects on a
 * real S3-compatible server. Each is built from the same Segment traffic as a materialisation
 * into a schema of the service's database (itself checked against the oracle computed from
 * `events`), and must hold exactly its rows: after the first build, after more traffic, after
 * an erasure (nothing of the subject left anywhere, no Parquet object holding it), after a
 * rebuild. Deleting a materialisation empties its destination.
 */
const SERVICE = 'lake-web';
const prefix = `d${randomUUID().slice(0, 6)}`;
const REFERENCE = 'dref';
const LAKE_PREFIX = `lake/${prefix}/`;
const SPEC = { eventTables: { max: 40 }, promoteMaxColumns: 60 };

const test = archiveStackTest({
  workers: 1,
  env: { MATERIALIZE_POLL_MS: '100', MATERIALIZE_BATCH_ROWS: '500' },
});

const work = mkdtempSync(join(tmpdir(), 'tributary-mat-dest-'));
const duckPath = join(work, 'analytics.duckdb');
const remoteDb = `${prefix}_dest`;
const remoteUrl = (() => {
  const u = new URL(BASE_DATABASE_URL);
  u.pathname = `/${remoteDb}`;
  return u.toString();
})();
let remote: pg.Pool;
let store: ObjectStore;
let writeKey: string;

test.beforeAll(async ({ stack, s3 }) => {
  const admin = new pg.Pool({ connectionString: BASE_DATABASE_URL, max: 1 });
  await admin.query(`CREATE DATABASE "${remoteDb}"`);
  await admin.end();
  remote = new pg.Pool({ connectionString: remoteUrl, max: 2 });
  store = createObjectStore(s3.config);
  const key = await call(stack.url, '/v1/admin/keys', {
    body: { name: 'segment', scopes: ['ingest'], services: [SERVICE], rateLimitPerMinute: 1_000_000 },
  });
  expect(key.status).toBe(201);
  writeKey = key.body.key;
});
test.afterAll(async () => {
  await remote?.end();
  await store?.close();
  const admin = new pg.Pool({ connectionString: BASE_DATABASE_URL, max: 1 });
  await admin.query(`DROP DATABASE IF EXISTS "${remoteDb}" WITH (FORCE)`);
  await admin.end();
  rmSync(work, { recursive: true, force: true });
});

const DESTINATIONS = {
  remote: { kind: 'postgres', connection: remoteUrl, schema: 'analytics' },
  duck: { kind: 'duckdb', path: duckPath },
  lake: { kind: 'parquet', prefix: LAKE_PREFIX },
} as const;
type Name = keyof typeof DESTINATIONS;

async function read(name: Name): Promise<TableSets> {
  if (name === 'remote') return postgresSets(remote, 'analytics');
  if (name === 'duck') return duckdbSets(duckPath);
  return (await parquetSets(store, LAKE_PREFIX)).sets;
}

const storedCount = async (stack: Stack) =>
  Number((await stack.env.pool.query<{ n: string }>('SELECT count(*) AS n FROM events')).rows[0]?.n);

/**
 * Waits until the reference has applied every stored event and every destination holds
 * exactly the reference's rows (a DuckDB file busy with a sync is read again).
 */
async function converged(stack: Stack, what: string): Promise<TableSets> {
  let last: Record<string, unknown> = {};
  try {
    return await waitFor(
      async () => {
        const stored = await storedCount(stack);
        for (const name of [REFERENCE, ...Object.keys(DESTINATIONS)]) {
          const m = await call(stack.url, `/v1/admin/materializations/${name}`);
          if (m.body.state !== 'running' || m.body.lag.pending !== 0 || m.body.lag.staleDays !== 0) {
            last = { name, state: m.body.state, lag: m.body.lag, error: m.body.lastError };
            return undefined;
          }
        }
        if ((await storedCount(stack)) !== stored) return undefined;
        // A rebuild swaps a schema in while it is read: read again.
        const reference = await postgresSets(stack.env.pool, 'dref').catch(() => undefined);
        if (reference === undefined) return undefined;
        for (const name of Object.keys(DESTINATIONS) as Name[]) {
          // A destination holds its staging schema's rows (the lake, built batch by batch from
          // the start, types its columns as the first values came: a rebuild types them widest).
          const staged = await postgresSets(stack.env.pool, stagingSchema(name)).catch(() => undefined);
          if (staged === undefined) return undefined;
          if (name !== 'lake' && JSON.stringify(staged) !== JSON.stringify(reference)) {
            last = { name, staged: 'differs from the reference' };
            return undefined;
          }
          const got = await read(name).catch((err: Error) => ({ error: err.message }));
          if (JSON.stringify(got) !== JSON.stringify(staged)) {
            const tables = new Set([...Object.keys(got), ...Object.keys(staged)]);
            const differ = [...tables].filter(
              (t) => JSON.stringify((got as TableSets)[t]) !== JSON.stringify(staged[t]),
            );
            last = {
              name,
              differ: differ.map((t) => ({ t, got: (got as TableSets)[t], want: reference[t] })),
              error: (got as { error?: string }).error,
            };
            return undefined;
          }
        }
        return reference;
      },
      90_000,
      what,
      1_000,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last difference: ${JSON.stringify(last).slice(0, 3000)}`);
  }
}

describe('materialisation destinations', () => {
  const calls = segmentTraffic({ seed: 11, users: 10, eventNames: 60, wideProperties: 80, prefix });
  const distinct = new Set(calls.map((c) => c.messageId)).size;
  const half = Math.floor(calls.length / 2);

  test('refuses two materialisations writing to one destination', async ({ stack }) => {
    const first = await call(stack.url, '/v1/admin/materializations/lake', {
      method: 'PUT',
      body: { ...SPEC, destination: DESTINATIONS.lake },
    });
    expect(first.status).toBe(201);
    const nested = await call(stack.url, '/v1/admin/materializations/lake2', {
      method: 'PUT',
      body: { destination: { kind: 'parquet', prefix: `${LAKE_PREFIX}inner` } },
    });
    expect(nested.status).toBe(409);
    expect(nested.body.error.code).toBe('destination_in_use');
  });

  test('every destination holds the rows of the schema built beside it', async ({ stack }) => {
    await sendBatches(stack, writeKey, calls.slice(0, half));
    const firstHalf = new Set(calls.slice(0, half).map((c) => c.messageId)).size;
    await waitFor(async () => (await storedCount(stack)) === firstHalf, 30_000, 'first half stored');
    const ref = await call(stack.url, `/v1/admin/materializations/${REFERENCE}`, {
      method: 'PUT',
      body: { ...SPEC, destination: { kind: 'postgres', schema: 'dref' } },
    });
    expect(ref.status).toBe(201);
    for (const name of ['remote', 'duck'] as const) {
      const put = await call(stack.url, `/v1/admin/materializations/${name}`, {
        method: 'PUT',
        body: { ...SPEC, destination: DESTINATIONS[name] },
      });
      expect(put.status).toBe(201);
    }
    const first = await converged(stack, 'first build everywhere');
    expect(Object.keys(first)).toEqual(
      expect.arrayContaining(['tracks', 'users', 'daily_counts', 'identity_links']),
    );
    await sendBatches(stack, writeKey, calls.slice(half));
    await waitFor(async () => (await storedCount(stack)) === distinct, 30_000, 'all stored');
    const all = await converged(stack, 'second half everywhere');
    expect(all.tracks?.rows).toBeGreaterThan(first.tracks?.rows ?? 0);
    // The reference itself equals the oracle computed from events.
    await expectAppendTablesMatch(stack.env.pool, 'dref');
    await expectTraitsMatch(stack.env.pool, 'dref', 'users');
    await expectTraitsMatch(stack.env.pool, 'dref', 'accounts');
    await expectDailyCountsMatch(stack.env.pool, 'dref');
    // The staging schemas of the outside destinations equal the reference too.
    const staged = await postgresSets(stack.env.pool, stagingSchema('remote'));
    expect(staged).toEqual(all);
  }, 240_000);

  test('Parquet objects are laid out by partition and the manifest lists exactly them', async ({ stack }) => {
    const { manifest } = await parquetSets(store, LAKE_PREFIX);
    const listed = Object.values(manifest.tables).flatMap((t) => t.objects.map((o) => o.key));
    const stored = (await store.list(LAKE_PREFIX)).filter((k) => k.endsWith('.parquet'));
    expect([...stored].sort()).toEqual([...listed].sort());
    for (const o of manifest.tables.tracks?.objects ?? [])
      expect(o.key).toMatch(
        new RegExp(
          `^${LAKE_PREFIX}tracks/service=${SERVICE}/day=\\d{4}-\\d{2}-\\d{2}/part-[a-z0-9-]+\\.parquet$`,
        ),
      );
    for (const o of manifest.tables.users?.objects ?? [])
      expect(o.key).toMatch(new RegExp(`^${LAKE_PREFIX}users/service=${SERVICE}/bucket=[0-9a-f]/part-`));
    const m = await call(stack.url, '/v1/admin/materializations/lake');
    expect(m.body.destination?.synced?.position ?? manifest.position).toEqual(manifest.position);
  });

  test('an erasure reaches every destination, and a rebuild gives the same rows', async ({ stack }) => {
    const userId = `${prefix}-u2`;
    const ids = [userId, `${prefix}-a2`, `${prefix}-old2`];
    const mentions = async () => {
      const remoteRows = await remote.query<{ t: string }>(
        `SELECT 'tracks' AS t FROM analytics.tracks WHERE user_id = ANY($1) OR anonymous_id = ANY($1)
         UNION ALL SELECT 'users' FROM analytics.users WHERE user_id = ANY($1)
         UNION ALL SELECT 'identifies' FROM analytics.identifies WHERE user_id = ANY($1) OR anonymous_id = ANY($1)`,
        [ids],
      );
      return [
        ...remoteRows.rows.map((r) => `remote.${r.t}`),
        ...(await parquetObjectsMentioning(store, LAKE_PREFIX, ids)),
      ];
    };
    expect((await mentions()).length).toBeGreaterThan(0);
    const erase = await call(stack.url, `/v1/users/${userId}/events`, { method: 'DELETE' });
    expect(erase.status).toBe(202);
    await waitFor(
      async () => (await call(stack.url, `/v1/dsar/${erase.body.requestId}`)).body.status === 'completed',
      60_000,
      'erasure completed',
    );
    const after = await converged(stack, 'erasure synced everywhere');
    expect(await mentions()).toEqual([]);
    const duckRows = JSON.stringify(await duckdbSets(duckPath));
    expect(duckRows).toBe(JSON.stringify(after));
    // All four rebuilt from the same events: each column typed widest, the same everywhere.
    for (const name of [REFERENCE, 'remote', 'duck', 'lake']) {
      const r = await call(stack.url, `/v1/admin/materializations/${name}/rebuild`, { method: 'POST' });
      expect(r.status).toBe(202);
    }
    // Each destination equals its rebuilt staging schema; the remote and DuckDB ones, built
    // like the reference, equal it (the lake, built batch by batch from the start, may name
    // other event tables: a rebuild keeps the names tables had).
    const rebuilt = await converged(stack, 'rebuilt everywhere');
    expect(rebuilt.tracks?.rows).toBe(after.tracks?.rows);
    expect(await mentions()).toEqual([]);
  }, 240_000);

  test('deleting a materialisation empties its destination', async ({ stack }) => {
    for (const name of ['remote', 'duck', 'lake']) {
      const res = await call(stack.url, `/v1/admin/materializations/${name}`, { method: 'DELETE' });
      const errors = res.status === 204 ? [] : stack.api.logs.filter((l) => Number(l.level) >= 50);
      expect({ name, status: res.status, errors }).toEqual({ name, status: 204, errors: [] });
    }
    expect(await store.list(LAKE_PREFIX)).toEqual([]);
    expect(Object.keys(await duckdbSets(duckPath))).toEqual([]);
    const left = await remote.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'analytics'`);
    expect(left.rowCount).toBe(0);
    const staging = await stack.env.pool.query(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [
      stagingSchema('remote'),
    ]);
    expect(staging.rowCount).toBe(0);
    expect(existsSync(duckPath)).toBe(true);
  });
});
