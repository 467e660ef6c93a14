/**
 * Scenario `source-pg` (by name only): a PostgreSQL table source (ARCHITECTURE §15) reading
 * BENCH_SOURCE_ROWS (500,000) rows of an orders table in a database of its own into the
 * stream, against PostgreSQL's `COPY (SELECT * FROM orders) TO STDOUT` of the same table read
 * to the end by a Node client, taking turns for BENCH_ROUNDS rounds. The source's rate is from
 * its creation to its state reporting every row buffered (`state.rowsRead`), every row mapped,
 * validated and XADDed through the ingest pipeline; each round is a new source, so its events
 * are new. The `work` process running it also persists the events as they arrive (a work
 * process always does), so its CPU per row holds both; the time until every row is stored is
 * reported beside it. BENCH_SOURCE_BATCH sets maxBatchRows (default 5000); BENCH_SOURCE_PROF=DIR writes a CPU profile of the work process there.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { ADMIN_KEY } from '../helpers/env.ts';
import { createSourceDatabase, type SourceDatabase } from '../helpers/sources.ts';
import { startWorker, stopChild } from './children.ts';
import { type BenchContext, envNumber, log, ratios, round, SETTINGS, sleep } from './measure.ts';
import { CpuMeter } from './proc.ts';
import type { BenchRow } from './report.ts';

const KEYS = { METADATA_ENCRYPTION_KEYS: `bench:${randomBytes(32).toString('base64')}` };

const emptyRow = (scenario: string): BenchRow => ({
  scenario,
  events: 0,
  durationS: 0,
  eventsPerSec: 0,
  p50Ms: null,
  p99Ms: null,
  failures: null,
  peakRssMb: null,
  cpuPercent: null,
  cpuUsPerEvent: null,
  clientCpuPercent: null,
  redisCpuPercent: null,
  hostCpuPercent: null,
  ratios: {},
});

async function makeTable(db: SourceDatabase, rows: number): Promise<void> {
  await db.pool.query(`
    CREATE TABLE orders (
      id bigserial PRIMARY KEY,
      updated_at timestamptz(6) NOT NULL,
      status text NOT NULL,
      customer text NOT NULL,
      total numeric(12, 2) NOT NULL,
      payload jsonb NOT NULL
    )`);
  await db.pool.query(
    `INSERT INTO orders (updated_at, status, customer, total, payload)
     SELECT now() - interval '2 days' + g * interval '1 millisecond',
            (ARRAY['order.placed', 'order.paid', 'order.shipped'])[1 + g % 3],
            'customer-' || (g % 10000), (g % 100000) / 100.0,
            jsonb_build_object('sku', 'SKU-' || (g % 5000), 'qty', 1 + g % 4, 'channel', 'web',
                               'note', repeat('x', 40))
       FROM generate_series(1, $1) g`,
    [rows],
  );
  // The index a keyset reader wants (README: PostgreSQL table).
  await db.pool.query('CREATE INDEX orders_cursor_idx ON orders (updated_at, id)');
  await db.pool.query('VACUUM ANALYZE orders');
}

/** COPY … TO STDOUT of the whole table, read to the end: seconds, bytes. */
async function copyOut(url: string): Promise<{ s: number; bytes: number }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    let bytes = 0;
    const started = performance.now();
    await pipeline(
      client.query(copyTo('COPY (SELECT * FROM orders) TO STDOUT')),
      new Writable({
        write(chunk: Buffer, _enc, done) {
          bytes += chunk.length;
          done();
        },
      }),
    );
    return { s: (performance.now() - started) / 1000, bytes };
  } finally {
    await client.end();
  }
}

async function api(url: string, path: string, init: { method?: string; body?: unknown } = {}) {
  const res = await fetch(`${url}${path}`, {
    method: init.method ?? 'GET',
    headers: { 'x-api-key': ADMIN_KEY, 'content-type': 'application/json' },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  const body = (await res.json().catch(() => null)) as Record<string, unknown> | null;
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${res.status} ${JSON.stringify(body)}`);
  return body as Record<string, unknown>;
}

export async function sourceThroughput(ctx: BenchContext): Promise<void> {
  if (!ctx.picked.has('source-pg')) return;
  const rows = envNumber('BENCH_SOURCE_ROWS', 500_000);
  const db = await createSourceDatabase();
  ctx.onCleanup(() => db.drop());
  log(`source-pg: ${rows} rows in ${db.name}`);
  await makeTable(db, rows);
  const serve = await ctx.startServe(KEYS);
  const worker = await startWorker({
    ...ctx.serveEnv,
    ...KEYS,
    SOURCE_POLL_MS: '100',
    ...(process.env.BENCH_SOURCE_PROF
      ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_SOURCE_PROF}` }
      : {}),
  });
  ctx.onCleanup(() => stopChild(worker.child));

  let copyS = 0;
  let copyBytes = 0;
  const meter = new CpuMeter({ work: worker.pid });
  const stored: number[] = [];
  let read = 0;
  for (let r = 0; r < SETTINGS.rounds; r++) {
    log(`source-pg round ${r + 1}: COPY TO`);
    const copied = await copyOut(db.url);
    copyS += copied.s;
    copyBytes = copied.bytes;
    log(`source-pg round ${r + 1}: the source`);
    const started = performance.now();
    meter.start();
    const source = await api(serve.url, '/v1/admin/sources', {
      method: 'POST',
      body: {
        kind: 'postgres',
        name: `bench-orders-${r}`,
        service: 'bench-source',
        connection: db.url,
        table: 'orders',
        cursorColumn: 'updated_at',
        idColumn: 'id',
        typeColumn: 'status',
        userIdColumn: 'customer',
        intervalSeconds: 3600,
        ...(process.env.BENCH_SOURCE_BATCH ? { maxBatchRows: Number(process.env.BENCH_SOURCE_BATCH) } : {}),
      },
    });
    const id = String(source.id);
    for (;;) {
      const state = (await api(serve.url, `/v1/admin/sources/${id}`)).state as {
        rowsRead: number;
        lastError: string | null;
      };
      if (state.lastError) throw new Error(`source failed: ${state.lastError}`);
      if (state.rowsRead >= rows) break;
      await sleep(50);
    }
    meter.stop();
    read += rows;
    // The worker goes on persisting what was buffered: how long until every row is stored.
    for (;;) {
      const { rows: n } = await ctx.env.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM events WHERE key_id = $1`,
        [`source:${id}`],
      );
      if ((n[0]?.n ?? 0) >= rows) break;
      await sleep(200);
    }
    stored.push((performance.now() - started) / 1000);
  }
  const copyRow: BenchRow = {
    ...emptyRow(
      `limit: COPY (SELECT * FROM orders) TO STDOUT, read by a Node client (${round(copyBytes / rows)} bytes/row)`,
    ),
    events: rows * SETTINGS.rounds,
    durationS: round(copyS, 2),
    eventsPerSec: Math.round((rows * SETTINGS.rounds) / copyS),
  };
  const sourceRow: BenchRow = {
    ...emptyRow('source-pg: PostgreSQL table source into the stream (rows/s), work process also persisting'),
    events: read,
    durationS: round(meter.wallS, 2),
    eventsPerSec: Math.round(read / meter.wallS),
    cpuPercent: round(meter.cpuPercent('work')),
    cpuUsPerEvent: round((meter.cpuS('work') * 1e6) / read, 1),
    peakRssMb: Math.round(meter.peakRssMb('work')),
  };
  sourceRow.ratios = ratios(sourceRow, { 'COPY TO': copyRow });
  ctx.report.rows.push(copyRow, sourceRow);
  ctx.report.checks['source-pg: seconds until every row was stored, per round'] = stored
    .map((s) => round(s, 1))
    .join(' / ');
  await stopChild(worker.child);
}
