/**
 * Scenario `materialize` (by name only), ARCHITECTURE §17:
 * 1. The feed's cost to ingest: BENCH_MAT_ROWS (100,000) rows inserted in batches of 500 by the
 *    worker's statement (events + event_feed in one statement) against the same statement
 *    without the feed, taking turns for BENCH_ROUNDS rounds, same rows.
 * 2. Materialising: the same rows committed at once, then applied by a `work` process's runner
 *    into the PostgreSQL destination (tracks, ten event tables with typed columns, identifies,
 *    users, identity_links, daily_counts); events/s from the commit until the materialisation's
 *    position passes them, against the raw rate of one `INSERT … SELECT` of the same rows into a
 *    table shaped like `tracks`.
 * 3. The same rows built from scratch into a schema of this database, then into a DuckDB file
 *    (built in a staging schema, then copied whole): events/s of each, and their ratio.
 */
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { insertEventsJson } from '../../src/store/events.repo.ts';
import { ADMIN_KEY } from '../helpers/env.ts';
import { startWorker, stopChild } from './children.ts';
import { type BenchContext, envNumber, log, round, SETTINGS, sleep } from './measure.ts';
import type { BenchRow } from './report.ts';

const NAMES = Array.from({ length: 10 }, (_, i) => `Product Event ${i}`);

/** Rows as the worker buffers them: Segment tracks (9 in 10) and identifies. */
function rowsOf(n: number): string[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => {
    const identify = i % 10 === 9;
    const at = new Date(now - (i % 86_400) * 1000).toISOString();
    return JSON.stringify({
      id: randomUUID(),
      timestamp: at,
      receivedAt: at,
      service: 'bench-mat',
      type: identify ? 'identify' : NAMES[i % NAMES.length],
      userId: `u${i % 5000}`,
      anonymousId: `a${i % 7000}`,
      metadata: identify
        ? {
            segmentType: 'identify',
            traits: { email: `u${i % 5000}@example.com`, plan: 'pro', seats: i % 50 },
          }
        : {
            segmentType: 'track',
            properties: {
              sku: `sku-${i % 1000}`,
              price: (i % 1000) / 10,
              quantity: i % 7,
              gift: i % 2 === 0,
              tags: ['a'],
            },
            context: { library: { name: 'analytics-node', version: '3.1.0' } },
          },
    });
  });
}

const PLAIN = `INSERT INTO events (id, occurred_at, received_at, service, type, user_id, message, metadata, key_id, anonymous_id, violations)
  SELECT (r->>'id')::uuid, (r->>'timestamp')::timestamptz, (r->>'receivedAt')::timestamptz, r->>'service', r->>'type',
         r->>'userId', r->>'message', r->'metadata', r->>'keyId', r->>'anonymousId', r->'violations'
    FROM jsonb_array_elements($1::jsonb) AS r ON CONFLICT DO NOTHING`;

const row = (
  scenario: string,
  events: number,
  seconds: number,
  ratiosOf: Record<string, number> = {},
): BenchRow => ({
  scenario,
  events,
  durationS: round(seconds, 2),
  eventsPerSec: Math.round(events / seconds),
  p50Ms: null,
  p99Ms: null,
  failures: null,
  peakRssMb: null,
  cpuPercent: null,
  cpuUsPerEvent: null,
  clientCpuPercent: null,
  redisCpuPercent: null,
  hostCpuPercent: null,
  ratios: ratiosOf,
});

async function api(url: string, path: string, init: { method?: string; body?: unknown } = {}) {
  const res = await fetch(`${url}${path}`, {
    method: init.method ?? 'GET',
    headers: { 'x-api-key': ADMIN_KEY, 'content-type': 'application/json' },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  if (res.status >= 300) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? {} : ((await res.json()) as Record<string, unknown>);
}

export async function materializeBench(ctx: BenchContext): Promise<void> {
  if (!ctx.picked.has('materialize')) return;
  const n = envNumber('BENCH_MAT_ROWS', 100_000);
  const pool = ctx.env.pool;
  const empty = () => pool.query('TRUNCATE events, event_feed');

  // 1. The feed's cost to ingest.
  let plainS = 0;
  let feedS = 0;
  for (let r = 0; r < SETTINGS.rounds; r++) {
    for (const withFeed of r % 2 === 0 ? [false, true] : [true, false]) {
      const rows = rowsOf(n);
      await empty();
      const started = performance.now();
      for (let i = 0; i < n; i += 500) {
        const json = `[${rows.slice(i, i + 500).join(',')}]`;
        if (withFeed) await insertEventsJson(pool, json);
        else await pool.query(PLAIN, [json]);
      }
      const s = (performance.now() - started) / 1000;
      if (withFeed) feedS += s;
      else plainS += s;
      log(
        `materialize round ${r + 1}: insert ${withFeed ? 'with' : 'without'} the feed: ${Math.round(n / s)} rows/s`,
      );
    }
  }
  const total = n * SETTINGS.rounds;
  const plainRow = row('insert without feed', total, plainS);
  const feedRow = row('insert with feed', total, feedS, { 'insert without feed': round(plainS / feedS, 3) });

  // 2. Materialising.
  await empty();
  const serve = await ctx.startServe();
  const worker = await startWorker({ ...ctx.serveEnv, MATERIALIZE_POLL_MS: '20' });
  ctx.onCleanup(() => stopChild(worker.child));
  await api(serve.url, '/v1/admin/materializations/bench', {
    method: 'PUT',
    body: { destination: { kind: 'postgres', schema: 'bench_mat' } },
  });
  const applied = async () =>
    Number(
      ((await api(serve.url, '/v1/admin/materializations/bench')) as { eventsApplied: number }).eventsApplied,
    );
  while ((await api(serve.url, '/v1/admin/materializations/bench')).position === null) await sleep(50);
  let matS = 0;
  let rawS = 0;
  for (let r = 0; r < SETTINGS.rounds; r++) {
    const rows = rowsOf(n);
    await empty();
    const mat = await pool.query<{ t: string }>(
      `SELECT tablename AS t FROM pg_tables WHERE schemaname = 'bench_mat'`,
    );
    await pool.query(`TRUNCATE ${mat.rows.map((t) => `bench_mat."${t.t}"`).join(', ')}`);
    const before = await applied();
    const client = await pool.connect();
    await client.query('BEGIN');
    for (let i = 0; i < n; i += 500)
      await insertEventsJson(client as never, `[${rows.slice(i, i + 500).join(',')}]`);
    await client.query('COMMIT');
    client.release();
    const started = performance.now();
    // Applied, and the touched days recounted.
    for (;;) {
      const m = (await api(serve.url, '/v1/admin/materializations/bench')) as {
        eventsApplied: number;
        lag: { staleDays: number };
      };
      if (m.eventsApplied >= before + n && m.lag.staleDays === 0) break;
      await sleep(20);
    }
    const s = (performance.now() - started) / 1000;
    matS += s;
    await pool.query('DROP TABLE IF EXISTS bench_raw_tracks');
    await pool.query('CREATE TABLE bench_raw_tracks (LIKE bench_mat.tracks INCLUDING ALL)');
    const rawStarted = performance.now();
    await pool.query(
      `INSERT INTO bench_raw_tracks (id, service, occurred_at, received_at, user_id, anonymous_id, key_id, event, properties, context)
       SELECT id, service, occurred_at, received_at, user_id, anonymous_id, key_id, type, metadata->'properties', metadata->'context'
           FROM events`,
    );
    const raw = (performance.now() - rawStarted) / 1000;
    rawS += raw;
    log(
      `materialize round ${r + 1}: ${Math.round(n / s)} events/s materialised; INSERT … SELECT ${Math.round(n / raw)} rows/s`,
    );
  }
  await pool.query('DROP TABLE IF EXISTS bench_raw_tracks');
  const rawRow = row('INSERT … SELECT (tracks shape)', total, rawS);
  const matRow = row('materialize (postgres schema)', total, matS, {
    'INSERT … SELECT (tracks shape)': round(rawS / matS, 3),
  });
  ctx.report.rows.push(plainRow, feedRow, rawRow, matRow);
  ctx.report.checks['materialize: ingest rate with the feed ÷ without'] = round(plainS / feedS, 3);
  const tables = await pool.query<{ t: string; n: string }>(
    `SELECT relname AS t, n_live_tup::text AS n FROM pg_stat_user_tables WHERE schemaname = 'bench_mat' ORDER BY 1`,
  );
  ctx.report.checks['materialize: rows per table'] = tables.rows.map((t) => `${t.t} ${t.n}`).join(', ');
  await api(serve.url, '/v1/admin/materializations/bench', { method: 'DELETE' });

  // 3. Outside destinations: the last round's rows built from scratch into a schema of this
  // database, then into a DuckDB file (a staging schema, then a whole copy), same run.
  const tracks = Number(
    (
      await pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM events WHERE metadata->>'segmentType' = 'track'`,
      )
    ).rows[0]?.n,
  );
  const duckPath = join(tmpdir(), `tributary-bench-${randomUUID()}.duckdb`);
  ctx.onCleanup(async () => rmSync(duckPath, { force: true }));
  const build = async (name: string, destination: unknown, done: () => Promise<boolean>) => {
    const started = performance.now();
    await api(serve.url, `/v1/admin/materializations/${name}`, { method: 'PUT', body: { destination } });
    for (;;) {
      const m = (await api(serve.url, `/v1/admin/materializations/${name}`)) as {
        position: unknown;
        lag: { pending: number; staleDays: number; unsynced: number };
      };
      if (
        m.position !== null &&
        m.lag.pending === 0 &&
        m.lag.staleDays === 0 &&
        m.lag.unsynced === 0 &&
        (await done())
      )
        break;
      await sleep(50);
    }
    return (performance.now() - started) / 1000;
  };
  const schemaS = await build('bench-schema', { kind: 'postgres', schema: 'bench_mat2' }, async () => true);
  const duckS = await build('bench-duck', { kind: 'duckdb', path: duckPath }, async () => {
    try {
      return (await duckTracks(duckPath)) === tracks;
    } catch {
      return false;
    }
  });
  log(
    `materialize: built from scratch: schema ${Math.round(n / schemaS)} events/s, DuckDB ${Math.round(n / duckS)} events/s`,
  );
  ctx.report.rows.push(
    row('materialize build (postgres schema)', n, schemaS),
    row('materialize build (duckdb file)', n, duckS, {
      'materialize build (postgres schema)': round(schemaS / duckS, 3),
    }),
  );
  for (const name of ['bench-schema', 'bench-duck'])
    await api(serve.url, `/v1/admin/materializations/${name}`, { method: 'DELETE' });
}

/** Rows of `tracks` in a DuckDB file (read-only; the file is free between syncs). */
async function duckTracks(path: string): Promise<number> {
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const db = await DuckDBInstance.create(path, { access_mode: 'READ_ONLY' });
  const conn = await db.connect();
  try {
    const r = await conn.runAndReadAll('SELECT count(*)::INTEGER AS n FROM tracks');
    return (r.getRowObjectsJson() as { n: number }[])[0]?.n ?? 0;
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}
