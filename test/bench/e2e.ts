/**
 * Raw COPY into the events table (the limit), then end to end: batch ingest at a fixed
 * open-loop rate while `tributary work` processes persist, watching the backlog.
 *
 * Open loop, so the offered rate stays what was asked whatever the workers do: a backlog
 * that grows then shows as a positive slope instead of slowing the clients down. The rate
 * defaults to BENCH_E2E_FRACTION (0.6) of the COPY rate just measured, above the 0.5 target,
 * so a flat backlog at that rate shows the target is met; the persisted rate can never
 * exceed the offered rate, so its ratio to COPY is a floor, not the workers' ceiling.
 */
import { fileURLToPath } from 'node:url';
import { startWorker, stopChild, type WorkerChild } from './children.ts';
import {
  type BenchContext,
  countRows,
  dropStreams,
  envNumber,
  log,
  ratios,
  round,
  runLimit,
  SETTINGS,
  sleep,
  streamEntries,
  Tally,
} from './measure.ts';
import { runOpenLoop } from './open-loop.ts';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

/** Raw COPY rounds; returns rows/s. */
export async function copyLimit(ctx: BenchContext): Promise<number> {
  const { env } = ctx;
  await env.pool.query('TRUNCATE events');
  const copy = new Tally({ server: 0 });
  for (let i = 0; i < SETTINGS.rounds; i++) {
    log(`limit: raw COPY ${SETTINGS.roundS} s`);
    await runLimit(
      here('./limits/copy.ts'),
      { DATABASE_URL: env.databaseUrl, SECONDS: String(SETTINGS.roundS) },
      copy,
    );
  }
  ctx.report.rows.push(
    copy.row('limit: raw COPY into events, 10,000 rows per COPY', ['server'], { latency: false }),
  );
  await env.pool.query('TRUNCATE events');
  return copy.rate;
}

interface Sample {
  t: number;
  backlog: number;
  rows: number;
}

export async function endToEnd(ctx: BenchContext, tributaryEnv: Record<string, string>, copyRate: number) {
  const { env, report } = ctx;
  const { rows, checks, anomalies } = report;
  const serve = await ctx.serve();
  const apiKey = await ctx.ingestKey();
  const seconds = envNumber('BENCH_E2E_S', 60);
  const workerCount = envNumber('BENCH_WORKERS', 2);
  await env.pool.query('TRUNCATE events');
  await dropStreams(env);
  const workers: WorkerChild[] = [];
  for (let i = 0; i < workerCount; i++) workers.push(await startWorker(tributaryEnv));
  const batch = SETTINGS.batchSize;
  const rate = envNumber('BENCH_E2E_RATE', copyRate * envNumber('BENCH_E2E_FRACTION', 0.6));
  const requestsPerS = Math.max(1, Math.round(rate / batch));
  const offered = requestsPerS * batch;
  log(`end to end: ${offered} events/s open loop, ${workerCount} workers, ${seconds} s`);

  const pids: Record<string, number> = { server: serve.pid, client: 0 };
  const workerNames = workers.map((w, i) => {
    pids[`worker${i}`] = w.pid;
    return `worker${i}`;
  });
  const tally = new Tally(pids);
  const samples: Sample[] = [];
  const sample = async () => {
    const [backlog, stored] = await Promise.all([streamEntries(env), countRows(env)]);
    samples.push({ t: performance.now(), backlog, rows: stored });
  };
  const sampler = setInterval(() => void sample(), 2_000);
  tally.meter.start();
  const started = performance.now();
  const result = await runOpenLoop(
    {
      url: serve.url,
      path: '/v1/events/batch',
      batch,
      rate: requestsPerS,
      connections: 64,
      durationS: seconds,
      apiKey,
    },
    (pid) => tally.meter.setPid('client', pid),
  );
  tally.meter.stop();
  clearInterval(sampler);
  const accepted = result.status2xx * batch;
  tally.add(accepted, result.durationS, result.non2xx + result.errors, result.p50Ms, result.p99Ms);

  // Persisted rate and backlog slope (least squares) after a warm-up of a sixth of the run.
  const window = samples.filter((s) => s.t - started >= (seconds * 1000) / 6);
  const first = window[0];
  const last = window.at(-1);
  const span = first && last ? (last.t - first.t) / 1000 : 0;
  const persistedRate = span > 0 && first && last ? (last.rows - first.rows) / span : 0;
  const slope = backlogSlope(window);

  const ingestRow = tally.row(`end to end: ingest offered ${offered}/s (open loop)`, ['server']);
  ingestRow.note =
    result.unsent > 0
      ? `API behind the offered rate: ${result.unsent} requests waiting for a connection at the end, so p50/p99 are mostly time queued in the client`
      : `every request sent on time; client send lag p99 ${result.sendLagP99Ms} ms`;
  const persistRow = tally.row(`end to end: ${workerCount} workers persisting`, workerNames, {
    latency: false,
    rss: 'max',
  });
  persistRow.eventsPerSec = round(persistedRate);
  persistRow.events = last?.rows ?? 0;
  const workerCpuS = workerNames.reduce((a, n) => a + tally.meter.cpuS(n), 0);
  persistRow.cpuUsPerEvent = persistRow.events > 0 ? round((workerCpuS * 1e6) / persistRow.events, 2) : null;
  persistRow.ratios = ratios(persistRow, {
    'raw COPY': rows.find((r) => r.scenario.startsWith('limit: raw COPY')),
  });
  persistRow.note = `RSS of the largest worker; backlog ${first?.backlog ?? 0} → ${last?.backlog ?? 0} (${round(slope)} events/s)`;
  rows.push(ingestRow, persistRow);
  checks['e2e: offered events/s'] = offered;
  checks['e2e: backlog slope, events/s (0 = flat)'] = round(slope);
  checks['e2e: backlog at end of load'] = last?.backlog ?? 0;
  checks['e2e: requests unsent at the end (API behind)'] = result.unsent;
  if (slope > offered * 0.02)
    anomalies.push(`e2e: backlog grows by ${round(slope)} events/s: workers fall behind`);
  if (result.unsent > 0)
    anomalies.push(
      `e2e: the API fell behind the offered ${offered} events/s (host CPU ${ingestRow.hostCpuPercent}%)`,
    );

  await checkExactlyOnce(ctx, accepted);
  for (const w of workers) await stopChild(w.child);
}

/** Least-squares slope of the backlog over time, events/s; less jumpy than last − first. */
function backlogSlope(samples: Sample[]): number {
  if (samples.length < 2) return 0;
  const n = samples.length;
  const mt = samples.reduce((a, s) => a + s.t, 0) / n;
  const mb = samples.reduce((a, s) => a + s.backlog, 0) / n;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.t - mt) * (s.backlog - mb);
    den += (s.t - mt) ** 2;
  }
  return den > 0 ? (num / den) * 1000 : 0;
}

/** After the load, everything answered 202 lands, once (requests in flight at the end may add a few). */
async function checkExactlyOnce(ctx: BenchContext, accepted: number) {
  const { env, report } = ctx;
  const deadline = performance.now() + 60_000;
  let stored = await countRows(env);
  while (stored < accepted && performance.now() < deadline) {
    await sleep(500);
    stored = await countRows(env);
  }
  const { rows } = await env.pool.query<{ n: string }>('SELECT count(DISTINCT id)::text AS n FROM events');
  const distinct = Number(rows[0]?.n ?? 0);
  const inFlight = 64 * SETTINGS.batchSize;
  report.checks['e2e: events answered 202'] = accepted;
  report.checks['e2e: rows stored'] = stored;
  report.checks['e2e: distinct ids stored'] = distinct;
  if (stored < accepted || stored > accepted + inFlight || distinct !== stored) {
    report.anomalies.push(
      `e2e: ${stored} rows (${distinct} distinct ids) for ${accepted} events answered 202 (+${inFlight} in flight)`,
    );
  }
}
