/**
 * What a large table costs (`e2e-large`, by name only: several minutes):
 *
 * 1. ingest + persist on an empty table: batches of 100 in a closed loop (wrk, 10
 *    connections) into `serve` while BENCH_WORKERS `work` processes persist, for
 *    BENCH_LARGE_S (30): rows/s persisted, counted from the workers' batch log lines;
 * 2. BENCH_LARGE_ROWS (10,000,000) rows generated in SQL (not through the API): 30 days,
 *    20 services and 50 types each spread log-uniformly (a few common, many rare), 100,000
 *    users, an anonymousId on 10 %, violations on 0.1 %, 8 metadata properties;
 * 3. every filter of `GET /v1/events` timed over HTTP (median of 20 calls, default limit);
 * 4. the same ingest + persist with those rows present: its ratio to (1) (target ≥ 0.85);
 * 5. (3) and (4) again without the type index, so what it costs ingest and saves the
 *    queries is measured in the same run.
 */
import { ADMIN_KEY } from '../helpers/env.ts';
import { startWorker, stopChild, type WorkerChild } from './children.ts';
import {
  type BenchContext,
  dropStreams,
  envNumber,
  log,
  ratios,
  round,
  SETTINGS,
  settle,
  streamEntries,
  Tally,
} from './measure.ts';
import type { BenchRow } from './report.ts';
import { runWrk } from './wrk.ts';

/** The rows of step 2, in chunks of a million (one statement each, so progress shows). */
const GENERATE = `
INSERT INTO events (id, occurred_at, received_at, service, type, user_id, anonymous_id, metadata, key_id, violations)
SELECT gen_random_uuid(), t, t + interval '2 seconds',
       'service-' || floor(exp(random() * ln(20)))::int,
       'type.' || floor(exp(random() * ln(50)))::int,
       'user-' || floor(random() * 100000)::int,
       CASE WHEN g % 10 = 0 THEN 'anon-' || floor(random() * 1000000)::int END,
       jsonb_build_object('plan', 'pro', 'country', 'DE', 'path', '/checkout/confirm', 'sessionId', 's-' || g,
         'userAgent', 'Mozilla/5.0 Firefox/128.0', 'durationMs', g % 1500, 'amountCents', g * 37 % 100000,
         'currency', 'EUR'),
       'bench-key',
       CASE WHEN g % 1000 = 0 THEN '[{"path":"/orderId","code":"required","message":"is required"}]'::jsonb END
FROM (SELECT g, now() - interval '30 days' + g * (interval '30 days' / $1::int) AS t
      FROM generate_series($2::int, $3::int) g) s`;

/** The index that serves the `type` filter (alone or with a service); step 5 drops it. */
const TYPE_INDEXES = ['events_type_occurred_at_idx'];

/** `GET /v1/events` filters timed in step 3: the common and the rare value of each. */
function filters(): Record<string, string> {
  const mid = Date.now() - 15 * 86_400_000;
  const hour = (ms: number) => new Date(ms).toISOString();
  return {
    'newest page': '',
    'service (common)': 'service=service-1',
    'service (rare)': 'service=service-19',
    'type (common)': 'type=type.1',
    'type (rare)': 'type=type.49',
    'service + type (common, rare)': 'service=service-1&type=type.49',
    'service + type (rare, common)': 'service=service-19&type=type.1',
    'service + type (rare, rare)': 'service=service-19&type=type.49',
    userId: 'userId=user-4242',
    anonymousId: 'anonymousId=anon-4242',
    'violations=true': 'violations=true',
    'violations=false': 'violations=false',
    'from/to (one hour)': `from=${hour(mid)}&to=${hour(mid + 3_600_000)}`,
    'type (rare) + from/to (one day)': `type=type.49&from=${hour(mid)}&to=${hour(mid + 86_400_000)}`,
  };
}

async function timeQueries(url: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [name, query] of Object.entries(filters())) {
    const ms: number[] = [];
    for (let i = 0; i < 21; i++) {
      const start = performance.now();
      const res = await fetch(`${url}/v1/events${query ? `?${query}` : ''}`, {
        headers: { 'x-api-key': ADMIN_KEY },
      });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`GET /v1/events?${query}: ${res.status}`);
      if (i > 0) ms.push(performance.now() - start);
    }
    ms.sort((a, b) => a - b);
    out[name] = round(ms[Math.floor(ms.length / 2)] ?? 0, 1);
  }
  return out;
}

/** Step 1 or 4: rows/s the workers persisted while the API took closed-loop batches. */
async function persistRun(ctx: BenchContext, name: string, apiKey: string): Promise<BenchRow> {
  const { env } = ctx;
  const seconds = envNumber('BENCH_LARGE_S', 30);
  const serve = await ctx.serve();
  await dropStreams(env);
  const workers: WorkerChild[] = [];
  for (let i = 0; i < envNumber('BENCH_WORKERS', 2); i++) workers.push(await startWorker(ctx.serveEnv));
  const pids: Record<string, number> = {};
  workers.forEach((w, i) => {
    pids[`worker${i}`] = w.pid;
  });
  const tally = new Tally(pids);
  log(`e2e-large: ${name}, ${seconds} s`);
  tally.meter.start();
  const start = Date.now();
  const result = await runWrk({
    url: serve.url,
    path: '/v1/events/batch',
    batch: SETTINGS.batchSize,
    connections: SETTINGS.batchConnections,
    threads: 1,
    durationS: seconds,
    apiKey,
  });
  const end = Date.now();
  tally.meter.stop();
  // The first sixth is warm-up (the workers' pools, JIT); the rest is the window.
  const from = start + ((end - start) * 1) / 6;
  const persisted = workers
    .flatMap((w) => w.batches)
    .filter((b) => b.time >= from && b.time <= end)
    .reduce((sum, b) => sum + b.inserted, 0);
  const windowS = (end - from) / 1000;
  const backlog = await streamEntries(env);
  for (const w of workers) await stopChild(w.child);
  await settle();
  await dropStreams(env);
  tally.add(persisted, windowS);
  const row = tally.row(`e2e-large: ${name}: workers persisting`, Object.keys(pids), {
    latency: false,
    rss: 'max',
  });
  row.note = `API answered ${(result.requests - result.non2xx) * SETTINGS.batchSize} events; ${backlog} still buffered at the end`;
  return row;
}

async function generate(ctx: BenchContext, rows: number): Promise<number> {
  const began = performance.now();
  const chunk = 1_000_000;
  for (let from = 1; from <= rows; from += chunk) {
    const to = Math.min(rows, from + chunk - 1);
    await ctx.env.pool.query(GENERATE, [rows, from, to]);
    log(`e2e-large: ${to.toLocaleString('en')} of ${rows.toLocaleString('en')} rows generated`);
  }
  await ctx.env.pool.query('ANALYZE events');
  return (performance.now() - began) / 1000;
}

export async function largeTable(ctx: BenchContext): Promise<void> {
  if (!ctx.picked.has('e2e-large')) return;
  const { env, report } = ctx;
  const rows = envNumber('BENCH_LARGE_ROWS', 10_000_000);
  const apiKey = await ctx.ingestKey();
  await env.pool.query('TRUNCATE events');
  const empty = await persistRun(ctx, 'empty table', apiKey);

  log(`e2e-large: generating ${rows.toLocaleString('en')} rows in SQL`);
  const generateS = await generate(ctx, rows);
  const { rows: size } = await env.pool.query<{ table: string; indexes: string }>(
    `SELECT sum(pg_table_size(inhrelid))::text AS table, sum(pg_indexes_size(inhrelid))::text AS indexes
       FROM pg_inherits WHERE inhparent = 'events'::regclass`,
  );
  const serve = await ctx.serve();
  const withIndexes = await timeQueries(serve.url);
  const large = await persistRun(ctx, `${(rows / 1e6).toLocaleString('en')}M rows`, apiKey);
  large.ratios = ratios(large, { 'empty table': empty });

  // Without the type index(es), one at a time.
  const dropped: { index: string; queries: Record<string, number>; row: BenchRow }[] = [];
  for (const index of TYPE_INDEXES) {
    await env.pool.query(`DROP INDEX IF EXISTS ${index}`);
    const queries = await timeQueries(serve.url);
    const row = await persistRun(
      ctx,
      `${(rows / 1e6).toLocaleString('en')}M rows, without ${dropped.map((d) => `${d.index}, `).join('')}${index}`,
      apiKey,
    );
    row.ratios = ratios(row, { 'empty table': empty, 'every index': large });
    dropped.push({ index, queries, row });
  }

  report.rows.push(empty, large, ...dropped.map((d) => d.row));
  report.checks['e2e-large: rows generated, seconds'] = `${rows} in ${round(generateS)}`;
  report.checks['e2e-large: table / indexes, bytes per row'] =
    `${round(Number(size[0]?.table ?? 0) / rows)} / ${round(Number(size[0]?.indexes ?? 0) / rows)}`;
  report.checks['e2e-large: large / empty (target ≥ 0.85)'] = large.ratios['empty table'] ?? 0;
  for (const name of Object.keys(withIndexes)) {
    report.checks[
      `e2e-large: GET /v1/events ${name}, median ms (every index; ${dropped.map((d) => `without ${d.index}`).join('; then ')})`
    ] = [withIndexes[name], ...dropped.map((d) => d.queries[name])].join(' / ');
  }
}
