/**
 * `npm run bench`: ingest throughput and latency of the real processes, against a trivial
 * Hono route as the denominator, then the worker's persist rate on the backlog ingest left.
 *
 * Every process under test is a real child process (`tributary serve` / `work`, the baseline
 * app, and autocannon in a child of its own). The bench uses its own database and Redis
 * prefix and removes them, and every child, at the end, also on failure or Ctrl-C.
 * It reports numbers; it never fails because they are slow.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { ADMIN_KEY, createTestEnv, type TestEnv } from '../helpers/env.ts';
import { runTributary } from '../helpers/processes.ts';
import {
  killAllChildren,
  LoadGenerator,
  type ServerChild,
  startServe,
  startTrivial,
  startWorker,
  stopChild,
  type WorkerChild,
} from './children.ts';
import type { LoadResult, LoadSpec } from './load.ts';
import { CpuMeter } from './proc.ts';
import { type BenchReport, type BenchRow, formatTable, percentile, writeReport } from './report.ts';

const RESULTS = fileURLToPath(new URL('./results/latest.json', import.meta.url));

const SETTINGS = {
  connections: 50,
  batchConnections: 10,
  batchSize: 100,
  warmupS: 2,
  /** Baseline and single-event ingest alternate in rounds of this length (A B B A). */
  roundS: 5,
  rounds: 2,
  batchS: 10,
  streamPartitions: 8,
  workerPollMs: 250,
  /** Upper bound of the worker phase, so the bench always ends (reported, never asserted). */
  workerMaxS: 60,
} as const;

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

interface Merged {
  responses: number;
  status2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  durationS: number;
  sorted: Float64Array;
}

function merge(runs: LoadResult[]): Merged {
  const statusCodes: Record<string, number> = {};
  let total = 0;
  for (const r of runs) {
    total += r.latenciesMs.length;
    for (const [code, n] of Object.entries(r.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + n;
  }
  const sorted = new Float64Array(total);
  let at = 0;
  for (const r of runs) {
    sorted.set(r.latenciesMs, at);
    at += r.latenciesMs.length;
  }
  sorted.sort();
  const sum = (f: (r: LoadResult) => number) => runs.reduce((a, r) => a + f(r), 0);
  return {
    responses: sum((r) => r.responses),
    status2xx: sum((r) => r.status2xx),
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    timeouts: sum((r) => r.timeouts),
    statusCodes,
    durationS: sum((r) => r.durationS),
    sorted,
  };
}

function loadRow(scenario: string, runs: LoadResult[], eventsPerRequest: number, meter: CpuMeter): BenchRow {
  const m = merge(runs);
  const events = m.status2xx * eventsPerRequest;
  const cpuS = meter.cpuS('server');
  return {
    scenario,
    events,
    durationS: round(m.durationS, 2),
    eventsPerSec: round(events / m.durationS, 1),
    requestsPerSec: round(m.responses / m.durationS, 1),
    p50Ms: percentile(m.sorted, 50),
    p99Ms: percentile(m.sorted, 99),
    non2xx: m.non2xx,
    errors: m.errors,
    statusCodes: m.statusCodes,
    startRssMb: round(meter.startRssMb('server'), 1),
    peakRssMb: round(meter.peakRssMb('server'), 1),
    cpuPercent: round(meter.cpuPercent('server'), 1),
    cpuUsPerEvent: round(events > 0 ? (cpuS * 1e6) / events : 0, 2),
    clientCpuPercent: round(meter.cpuPercent('client'), 1),
    redisCpuPercent: meter.has('redis') ? round(meter.cpuPercent('redis'), 1) : null,
    hostCpuPercent: round(meter.hostCpuPercent(availableParallelism()), 1),
    ratioEventsPerSec: null,
    ratioP50: null,
    ratioP99: null,
    ratioCpuPerEvent: null,
  };
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

const ratio = (a: number | null, b: number | null) =>
  a === null || b === null || b === 0 ? null : round(a / b, 3);

async function measured(meter: CpuMeter, run: () => Promise<LoadResult>): Promise<LoadResult> {
  meter.start();
  try {
    return await run();
  } finally {
    meter.stop();
  }
}

/** Pid of redis-server when it runs on this host (its /proc entry is readable), else undefined. */
async function redisPid(env: TestEnv): Promise<number | undefined> {
  const info = await env.redis.info('server');
  const pid = Number(/^process_id:(\d+)/m.exec(info)?.[1]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').includes('redis') ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function streamEntries(env: TestEnv): Promise<number> {
  const pipeline = env.redis.pipeline();
  for (let p = 0; p < SETTINGS.streamPartitions; p++) pipeline.xlen(`${env.prefix}:events:{${p}}`);
  const replies = (await pipeline.exec()) ?? [];
  return replies.reduce((sum, [err, n]) => {
    if (err) throw err;
    return sum + Number(n);
  }, 0);
}

async function countRows(env: TestEnv): Promise<number> {
  const { rows } = await env.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM events');
  return Number(rows[0]?.n ?? 0);
}

async function bench(env: TestEnv, report: BenchReport): Promise<void> {
  const anomalies = report.anomalies;
  const tributaryEnv = env.env({ LOG_LEVEL: 'info', STREAM_PARTITIONS: String(SETTINGS.streamPartitions) });

  log(`database ${env.name}, redis prefix ${env.prefix}: migrating`);
  const migrated = await runTributary(['migrate'], tributaryEnv);
  if (migrated.code !== 0) throw new Error(`migrate exited with ${migrated.code}: ${migrated.stderr}`);

  const load = new LoadGenerator();
  const [trivial, serve] = await Promise.all([startTrivial(), startServe(tributaryEnv)]);
  const redis = await redisPid(env);
  const pids = (server: ServerChild) => ({
    server: server.pid,
    client: load.pid,
    ...(redis ? { redis } : {}),
  });
  const baselineMeter = new CpuMeter(pids(trivial));
  const singleMeter = new CpuMeter(pids(serve));
  const batchMeter = new CpuMeter(pids(serve));

  const headers = { 'x-api-key': ADMIN_KEY };
  const singleLoad = (url: string, durationS: number): LoadSpec => ({
    url,
    path: '/v1/events',
    kind: 'single',
    batchSize: 1,
    connections: SETTINGS.connections,
    durationS,
    headers,
  });
  const batchLoad = (durationS: number): LoadSpec => ({
    url: serve.url,
    path: '/v1/events/batch',
    kind: 'batch',
    batchSize: SETTINGS.batchSize,
    connections: SETTINGS.batchConnections,
    durationS,
    headers,
  });

  // Every answered ingest request, warm-up included, to check the buffer against afterwards.
  const ingestRuns: { result: LoadResult; eventsPerRequest: number }[] = [];

  log(`warm-up: ${SETTINGS.warmupS} s baseline, ${SETTINGS.warmupS} s single-event ingest`);
  await load.run(singleLoad(trivial.url, SETTINGS.warmupS));
  ingestRuns.push({
    result: await load.run(singleLoad(serve.url, SETTINGS.warmupS)),
    eventsPerRequest: 1,
  });

  const baselineRuns: LoadResult[] = [];
  const singleRuns: LoadResult[] = [];
  for (let round = 0; round < SETTINGS.rounds; round++) {
    // A B, then B A: drift and noise hit both sides alike.
    const order = round % 2 === 0 ? (['baseline', 'ingest'] as const) : (['ingest', 'baseline'] as const);
    for (const side of order) {
      log(`round ${round + 1}/${SETTINGS.rounds}: ${side} ${SETTINGS.roundS} s`);
      if (side === 'baseline') {
        baselineRuns.push(
          await measured(baselineMeter, () => load.run(singleLoad(trivial.url, SETTINGS.roundS))),
        );
      } else {
        const result = await measured(singleMeter, () => load.run(singleLoad(serve.url, SETTINGS.roundS)));
        singleRuns.push(result);
        ingestRuns.push({ result, eventsPerRequest: 1 });
      }
    }
  }

  log(`batch ingest: 1 s warm-up, ${SETTINGS.batchS} s measured`);
  ingestRuns.push({ result: await load.run(batchLoad(1)), eventsPerRequest: SETTINGS.batchSize });
  const batchResult = await measured(batchMeter, () => load.run(batchLoad(SETTINGS.batchS)));
  ingestRuns.push({ result: batchResult, eventsPerRequest: SETTINGS.batchSize });

  await load.close();
  await stopChild(trivial.child);
  await stopChild(serve.child);
  if (serve.child.exitCode !== 0) {
    anomalies.push(`serve exited with ${serve.child.exitCode ?? serve.child.signalCode} on SIGTERM`);
  }
  const serveErrors = serve.stderr().trim();
  if (serveErrors) anomalies.push(`serve wrote to stderr: ${serveErrors.slice(0, 500)}`);

  const baselineRow = loadRow('baseline: trivial route', baselineRuns, 1, baselineMeter);
  const singleRow = loadRow('ingest: single event', singleRuns, 1, singleMeter);
  singleRow.ratioEventsPerSec = ratio(singleRow.eventsPerSec, baselineRow.eventsPerSec);
  singleRow.ratioP50 = ratio(singleRow.p50Ms, baselineRow.p50Ms);
  singleRow.ratioP99 = ratio(singleRow.p99Ms, baselineRow.p99Ms);
  singleRow.ratioCpuPerEvent = ratio(singleRow.cpuUsPerEvent, baselineRow.cpuUsPerEvent);
  const batchRow = loadRow(
    `ingest: batch of ${SETTINGS.batchSize}`,
    [batchResult],
    SETTINGS.batchSize,
    batchMeter,
  );
  report.rows.push(baselineRow, singleRow, batchRow);
  for (const row of report.rows) {
    if ((row.non2xx ?? 0) > 0 || (row.errors ?? 0) > 0) {
      anomalies.push(
        `${row.scenario}: ${row.non2xx} non-2xx, ${row.errors} errors; status codes ${JSON.stringify(row.statusCodes)}`,
      );
    }
    if ((row.clientCpuPercent ?? 0) >= 90) {
      anomalies.push(
        `${row.scenario}: load generator at ${row.clientCpuPercent}% CPU, the client may be the limit`,
      );
    }
  }

  // The buffer must hold exactly what was answered 202, plus at most what was in flight when a
  // run stopped (autocannon drops those connections; the server may still have stored them).
  const counted = ingestRuns.reduce((a, r) => a + r.result.status2xx * r.eventsPerRequest, 0);
  const inFlight = ingestRuns.reduce(
    (a, r) =>
      a + (r.eventsPerRequest > 1 ? SETTINGS.batchConnections : SETTINGS.connections) * r.eventsPerRequest,
    0,
  );
  const backlog = await streamEntries(env);
  report.checks.eventsAnswered202 = counted;
  report.checks.streamEntries = backlog;
  report.checks.bufferMatchesResponses = backlog >= counted && backlog <= counted + inFlight;
  if (!report.checks.bufferMatchesResponses) {
    anomalies.push(
      `buffer holds ${backlog} entries; ${counted} events were answered 202 (+ at most ${inFlight} in flight)`,
    );
  }

  log(`worker: persisting a backlog of ${backlog} events with one work process`);
  const worker = await startWorker(tributaryEnv);
  const row = await persistBacklog(env, worker, backlog, anomalies);
  report.rows.push(row);
  await stopChild(worker.child);
  if (worker.child.exitCode !== 0) {
    anomalies.push(`work exited with ${worker.child.exitCode ?? worker.child.signalCode} on SIGTERM`);
  }
  report.checks.rowsPersisted = row.events;
}

async function persistBacklog(
  env: TestEnv,
  worker: WorkerChild,
  target: number,
  anomalies: string[],
): Promise<BenchRow> {
  const meter = new CpuMeter({ server: worker.pid });
  const started = performance.now();
  const startedAt = Date.now();
  meter.start();
  let rows = 0;
  let finished = started;
  const deadline = started + SETTINGS.workerMaxS * 1000;
  for (;;) {
    rows = await countRows(env);
    finished = performance.now();
    if (rows >= target) break;
    if (finished >= deadline) {
      anomalies.push(
        `worker: only ${rows} of ${target} rows after ${SETTINGS.workerMaxS} s; rate is partial`,
      );
      break;
    }
    if (worker.child.exitCode !== null) throw new Error(`worker exited early; stderr: ${worker.stderr()}`);
    await new Promise((r) => setTimeout(r, SETTINGS.workerPollMs));
  }
  meter.stop();
  if (rows > target) anomalies.push(`worker: ${rows} rows for ${target} stream entries`);
  const seconds = (finished - started) / 1000;
  // Cross-check from the worker's own batch log lines: first batch start to last commit.
  const first = worker.batches[0];
  const last = worker.batches.at(-1);
  if (first && last) {
    const inserted = worker.batches.reduce((a, b) => a + b.inserted, 0);
    const span = (last.time - Math.max(startedAt, first.time - first.ms)) / 1000;
    if (span > 0) log(`worker: ${Math.round(inserted / span)} rows/s by its own batch logs`);
  }
  const cpuS = meter.cpuS('server');
  return {
    scenario: 'worker: persist',
    events: rows,
    durationS: round(seconds, 2),
    eventsPerSec: round(rows / seconds, 1),
    requestsPerSec: null,
    p50Ms: null,
    p99Ms: null,
    non2xx: null,
    errors: null,
    statusCodes: null,
    startRssMb: round(meter.startRssMb('server'), 1),
    peakRssMb: round(meter.peakRssMb('server'), 1),
    cpuPercent: round(meter.cpuPercent('server'), 1),
    cpuUsPerEvent: round(rows > 0 ? (cpuS * 1e6) / rows : 0, 2),
    clientCpuPercent: null,
    redisCpuPercent: null,
    hostCpuPercent: round(meter.hostCpuPercent(availableParallelism()), 1),
    ratioEventsPerSec: null,
    ratioP50: null,
    ratioP99: null,
    ratioCpuPerEvent: null,
  };
}

export async function main(): Promise<number> {
  const env = createTestEnv();
  const report: BenchReport = {
    startedAt: new Date().toISOString(),
    finishedAt: '',
    host: { node: process.version, cpus: availableParallelism(), loadAverage: loadavg() },
    settings: { ...SETTINGS },
    rows: [],
    checks: {},
    anomalies: [],
  };

  let cleaned: Promise<void> | undefined;
  const cleanup = () => {
    cleaned ??= (async () => {
      killAllChildren();
      await env.cleanup().catch((err: unknown) => log(`cleanup failed: ${String(err)}`));
    })();
    return cleaned;
  };
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted = true;
    log(`${signal}: stopping children and removing ${env.name}`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', killAllChildren);

  const began = performance.now();
  try {
    await bench(env, report);
  } catch (err) {
    if (!interrupted) log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await cleanup();
    return 1;
  }
  await cleanup();

  report.finishedAt = new Date().toISOString();
  report.checks.totalSeconds = round((performance.now() - began) / 1000, 1);
  writeReport(RESULTS, report);
  process.stdout.write(`${formatTable(report.rows)}\n`);
  for (const a of report.anomalies) process.stdout.write(`! ${a}\n`);
  log(`${report.checks.totalSeconds} s in all; rows written to ${RESULTS}`);
  return 0;
}

if (import.meta.main) {
  // Exit explicitly: a stray handle must never keep the bench running.
  process.exit(await main());
}
