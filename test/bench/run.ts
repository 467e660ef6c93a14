/**
 * `npm run bench [-- --only GROUP,...]`: Tributary against the physical limits and the
 * stacks a Node team would otherwise write, on this machine, in one run.
 *
 * Groups (all by default; `--only` or BENCH_ONLY picks some):
 *   single  trivial Hono route, Tributary single-event ingest, Express + pg, Fastify + pg,
 *           Express + BullMQ, interleaved in rounds (A B C…, then …C B A)
 *   half    Tributary single-event ingest at half its measured rate, open loop: p50/p99
 *   batch   Tributary batch ingest (100 per request, API only), Express batch INSERT peer,
 *           raw pipelined XADD of the same entries, interleaved
 *   e2e     raw COPY into the events table, then ingest + workers persisting for BENCH_E2E_S
 *           (default 60) at an open-loop rate (BENCH_E2E_RATE, default half the COPY rate):
 *           persisted rows/s and whether the backlog stays flat
 *
 * Every process is a real child (tributary serve/work, peers, limits, wrk, autocannon) on
 * the local Redis and PostgreSQL, with its own database and Redis prefix, removed at the end
 * (also on failure or Ctrl-C). The bench reports; it never fails because numbers are slow.
 */
import { availableParallelism, cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ADMIN_KEY, createTestEnv, deleteKeys, type TestEnv } from '../helpers/env.ts';
import { runTributary } from '../helpers/processes.ts';
import {
  killAllChildren,
  LoadGenerator,
  type ServerChild,
  startScript,
  startServe,
  startTrivial,
  startWorker,
  stopChild,
  type WorkerChild,
} from './children.ts';
import { CpuMeter } from './proc.ts';
import { type BenchReport, type BenchRow, formatTable, writeReport } from './report.ts';
import { ensureWrk, runWrk, type WrkResult } from './wrk.ts';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const RESULTS = here('./results');
const GROUPS = ['single', 'half', 'batch', 'e2e'] as const;
type Group = (typeof GROUPS)[number];

const num = (name: string, fallback: number) => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
};

const SETTINGS = {
  roundS: num('BENCH_ROUND_S', 5),
  rounds: num('BENCH_ROUNDS', 2),
  singleConnections: 50,
  batchConnections: 10,
  batchSize: 100,
  e2eS: num('BENCH_E2E_S', 60),
  e2eWorkers: num('BENCH_WORKERS', 2),
  apiProcesses: num('BENCH_API_PROCESSES', 1),
  partitions: 8,
};

const PASS_THROUGH = [
  'BATCH_SIZE',
  'BATCH_MAX_WAIT_MS',
  'INSERT_CONCURRENCY',
  'DATABASE_POOL_SIZE',
  'DEDUPE_WINDOW_S',
];

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Lets requests still in flight when a load generator stopped finish on the server. */
const settle = () => sleep(500);

/** Sums of several measured windows of one scenario. */
class Tally {
  events = 0;
  seconds = 0;
  failures = 0;
  p50: number[] = [];
  p99: number[] = [];
  /** CPU of limit children, which run once per window. */
  limitCpu: { cpuS: number; wallS: number }[] = [];
  readonly meter: CpuMeter;
  constructor(pids: Record<string, number>) {
    this.meter = new CpuMeter(pids);
  }
  add(events: number, seconds: number, failures = 0, p50?: number, p99?: number) {
    this.events += events;
    this.seconds += seconds;
    this.failures += failures;
    if (p50 !== undefined) this.p50.push(p50);
    if (p99 !== undefined) this.p99.push(p99);
  }
  get rate() {
    return this.seconds > 0 ? this.events / this.seconds : 0;
  }
  row(scenario: string, servers: string[], latency = true): BenchRow {
    const cpuS = servers.reduce((a, s) => a + this.meter.cpuS(s), 0);
    const cpu = servers.reduce((a, s) => a + this.meter.cpuPercent(s), 0);
    const rss = servers.reduce((a, s) => a + this.meter.peakRssMb(s), 0);
    // Latency of several runs: the worst run's p99 and the median run's p50 (not a merge).
    const sortedP50 = [...this.p50].sort((a, b) => a - b);
    return {
      scenario,
      events: this.events,
      durationS: round(this.seconds, 2),
      eventsPerSec: round(this.rate),
      p50Ms: latency && sortedP50.length ? round(sortedP50[Math.floor(sortedP50.length / 2)] ?? 0, 2) : null,
      p99Ms: latency && this.p99.length ? round(Math.max(...this.p99), 2) : null,
      failures: latency ? this.failures : null,
      peakRssMb: rss > 0 ? round(rss) : null,
      cpuPercent: servers.length ? round(cpu) : null,
      cpuUsPerEvent: this.events > 0 && servers.length ? round((cpuS * 1e6) / this.events, 2) : null,
      clientCpuPercent: this.meter.has('client') ? round(this.meter.cpuPercent('client')) : null,
      ratios: {},
    };
  }
}

async function streamEntries(env: TestEnv, prefix = env.prefix): Promise<number> {
  const p = env.redis.pipeline();
  for (let i = 0; i < SETTINGS.partitions; i++) p.xlen(`${prefix}:events:{${i}}`);
  const replies = (await p.exec()) ?? [];
  return replies.reduce((sum, [err, n]) => (err ? sum : sum + Number(n)), 0);
}

async function dropStreams(env: TestEnv, prefix = env.prefix): Promise<void> {
  await env.redis.del(...Array.from({ length: SETTINGS.partitions }, (_, i) => `${prefix}:events:{${i}}`));
}

/** Waits until the events table stops growing (a peer's queue is drained): its row count and when. */
async function rowsSettled(env: TestEnv): Promise<{ rows: number; at: number }> {
  let last = { rows: await countRows(env), at: performance.now() };
  for (;;) {
    await sleep(250);
    const rows = await countRows(env);
    if (rows === last.rows) return last;
    last = { rows, at: performance.now() };
  }
}

const countRows = async (env: TestEnv) =>
  Number((await env.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM events')).rows[0]?.n ?? 0);

/** Runs a limit script (a child that prints `{"events","seconds"}`) while metering it. */
async function runLimit(file: string, env: Record<string, string>, tally: Tally): Promise<void> {
  const child = await import('node:child_process').then(({ spawn }) =>
    spawn(process.execPath, [here(file)], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  const meter = new CpuMeter({ server: child.pid ?? 0 });
  meter.start();
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  meter.stop();
  if (code !== 0) throw new Error(`${file} exited with ${code}`);
  const { events, seconds } = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as {
    events: number;
    seconds: number;
  };
  tally.add(events, seconds);
  tally.limitCpu.push({ cpuS: meter.cpuS('server'), wallS: meter.wallS });
}

function limitRow(scenario: string, t: Tally): BenchRow {
  const row = t.row(scenario, [], false);
  const cpuS = t.limitCpu.reduce((a, c) => a + c.cpuS, 0);
  const wallS = t.limitCpu.reduce((a, c) => a + c.wallS, 0);
  row.cpuPercent = wallS > 0 ? round((100 * cpuS) / wallS) : null;
  row.cpuUsPerEvent = t.events > 0 ? round((cpuS * 1e6) / t.events, 2) : null;
  return row;
}

interface Contender {
  name: string;
  server: ServerChild;
  extraPids?: Record<string, number>;
  path: string;
  batch: number;
  tally: Tally;
  /** Events per 2xx request. */
  perRequest: number;
}

async function measureWrk(c: Contender, connections: number, env: TestEnv): Promise<WrkResult> {
  c.tally.meter.start();
  let result: WrkResult;
  try {
    result = await runWrk(
      {
        url: c.server.url,
        path: c.path,
        batch: c.batch,
        connections,
        threads: 1,
        durationS: SETTINGS.roundS,
        apiKey: ADMIN_KEY,
      },
      (pid) => c.tally.meter.setPid('client', pid),
    );
  } finally {
    c.tally.meter.stop();
  }
  const ok = result.requests - result.non2xx;
  c.tally.add(
    ok * c.perRequest,
    result.durationS,
    result.non2xx + result.socketErrors,
    result.p50Ms,
    result.p99Ms,
  );
  void env;
  return result;
}

/** Runs each contender once per round, reversing the order every other round. */
async function interleave(
  contenders: Contender[],
  connections: number,
  env: TestEnv,
  before: (c: Contender) => Promise<void>,
  after: (c: Contender) => Promise<void>,
) {
  for (let r = 0; r < SETTINGS.rounds; r++) {
    const order = r % 2 === 0 ? contenders : [...contenders].reverse();
    for (const c of order) {
      log(`round ${r + 1}/${SETTINGS.rounds}: ${c.name} ${SETTINGS.roundS} s`);
      await before(c);
      await measureWrk(c, connections, env);
      await after(c);
    }
  }
}

async function bench(env: TestEnv, report: BenchReport, groups: Set<Group>): Promise<void> {
  const { anomalies, checks, rows } = report;
  ensureWrk();
  const tributaryEnv = env.env({
    LOG_LEVEL: 'info',
    STREAM_PARTITIONS: String(SETTINGS.partitions),
    API_PROCESSES: String(SETTINGS.apiProcesses),
    BUFFER_MAX_EVENTS: '50000000',
    // Service settings to try, passed through when set (e.g. BATCH_SIZE=2000 npm run bench).
    ...Object.fromEntries(
      PASS_THROUGH.flatMap((k) => (process.env[k] ? [[k, process.env[k] as string]] : [])),
    ),
  });
  log(`database ${env.name}, Redis prefix ${env.prefix}: migrating`);
  const migrated = await runTributary(['migrate'], tributaryEnv);
  if (migrated.code !== 0) throw new Error(`migrate exited with ${migrated.code}: ${migrated.stderr}`);
  const peerEnv = {
    DATABASE_URL: env.databaseUrl,
    REDIS_URL: env.redisUrl,
    BULLMQ_PREFIX: `${env.prefix}-bull`,
    BULLMQ_QUEUE: 'events',
  };

  const serve = await startServe(tributaryEnv);
  const serverPids = (s: ServerChild, extra: Record<string, number> = {}) => ({ server: s.pid, ...extra });
  const contender = (
    name: string,
    server: ServerChild,
    path: string,
    batch: number,
    extra: Record<string, number> = {},
  ): Contender => ({
    name,
    server,
    path,
    batch,
    perRequest: Math.max(1, batch),
    tally: new Tally({ ...serverPids(server, extra), client: 0 }),
  });
  // Tributary's buffer must hold exactly what it answered 202 for (± requests in flight at the end).
  const checkBuffer = async (c: Contender, answered: number, connections: number) => {
    await settle();
    const entries = await streamEntries(env);
    const slack = connections * c.perRequest;
    if (entries < answered || entries > answered + slack) {
      anomalies.push(
        `${c.name}: buffer holds ${entries} entries for ${answered} events answered 202 (+${slack} in flight)`,
      );
    }
    checks[`${c.name}: events answered 202`] = answered;
    checks[`${c.name}: stream entries`] = entries;
    await dropStreams(env);
  };

  let singleRate = 0;
  if (groups.has('single') || groups.has('half')) {
    const trivial = await startTrivial();
    const expressPg = await startScript(here('./peers/express-pg.ts'), peerEnv);
    const fastifyPg = await startScript(here('./peers/fastify-pg.ts'), peerEnv);
    const bullApi = await startScript(here('./peers/express-bullmq.ts'), peerEnv);
    const bullWorker = await startScript(here('./peers/bullmq-worker.ts'), peerEnv);
    const contenders = [
      contender('trivial route', trivial, '/v1/events', 0),
      contender('Tributary single', serve, '/v1/events', 0),
      contender('Express + pg', expressPg, '/v1/events', 0),
      contender('Fastify + pg', fastifyPg, '/v1/events', 0),
      contender('Express + BullMQ', bullApi, '/v1/events', 0, { worker: bullWorker.pid }),
    ];
    log('warm-up: 2 s each');
    for (const c of contenders)
      await runWrk({
        url: c.server.url,
        path: c.path,
        batch: 0,
        connections: 10,
        threads: 1,
        durationS: 2,
        apiKey: ADMIN_KEY,
      });
    await settle();
    await dropStreams(env);
    // The BullMQ worker drains what its warm-up queued before anything is measured.
    await rowsSettled(env);
    const [trivialC, tributaryC, expressC, fastifyC, bullC] = contenders as [
      Contender,
      Contender,
      Contender,
      Contender,
      Contender,
    ];
    let answered = 0;
    const rowsBefore = await countRows(env);
    const bullLanded: { rows: number; seconds: number } = { rows: 0, seconds: 0 };
    let runStart = { t: 0, rows: 0 };
    const before = async (c: Contender) => {
      if (c === bullC) runStart = { t: performance.now(), rows: await countRows(env) };
    };
    await interleave(contenders, SETTINGS.singleConnections, env, before, async (c) => {
      if (c === tributaryC) {
        answered = tributaryC.tally.events - answered;
        await checkBuffer(c, answered, SETTINGS.singleConnections);
        answered = tributaryC.tally.events;
      }
      if (c === bullC) {
        // Landed: rows the BullMQ worker inserted from the start of the run until its queue
        // was empty, over that time. Nothing else is measured while it drains.
        const drained = await rowsSettled(env);
        bullLanded.rows += drained.rows - runStart.rows;
        bullLanded.seconds += (drained.at - runStart.t) / 1000;
      }
    });
    const singleRows = contenders.map((c) => {
      const servers = c === bullC ? ['server', 'worker'] : ['server'];
      return c.tally.row(c === trivialC ? 'trivial Hono route (baseline)' : c.name, servers);
    });
    const [trivialRow, tributaryRow, expressRow, fastifyRow, bullRow] = singleRows as [
      BenchRow,
      BenchRow,
      BenchRow,
      BenchRow,
      BenchRow,
    ];
    const ratio = (a: BenchRow, b: BenchRow) => round(a.eventsPerSec / b.eventsPerSec, 3);
    tributaryRow.ratios = {
      trivial: ratio(tributaryRow, trivialRow),
      'Express+pg': ratio(tributaryRow, expressRow),
      'Fastify+pg': ratio(tributaryRow, fastifyRow),
      'Express+BullMQ': ratio(tributaryRow, bullRow),
    };
    bullRow.note = `accepted; the BullMQ worker landed ${round(bullLanded.seconds > 0 ? bullLanded.rows / bullLanded.seconds : 0)} rows/s from the start of each run until its queue was empty`;
    rows.push(...singleRows);
    singleRate = tributaryC.tally.rate;
    checks['peer rows stored during the single-event group'] = (await countRows(env)) - rowsBefore;
    void expressC;
    void fastifyC;
    for (const s of [trivial, expressPg, fastifyPg, bullApi, bullWorker]) await stopChild(s.child);
    await deleteKeys(env.redis, `${env.prefix}-bull:*`);
  }

  if (groups.has('half')) {
    const load = new LoadGenerator();
    const rate = Math.max(100, Math.round((singleRate || 10_000) / 2));
    log(`half rate: ${rate} events/s open loop for ${SETTINGS.roundS * 2} s`);
    const tally = new Tally({ server: serve.pid, client: load.pid });
    tally.meter.start();
    const r = await load.run({
      url: serve.url,
      path: '/v1/events',
      kind: 'single',
      batchSize: 1,
      connections: SETTINGS.singleConnections,
      durationS: SETTINGS.roundS * 2,
      headers: { 'x-api-key': ADMIN_KEY },
      overallRate: rate,
    });
    tally.meter.stop();
    const sorted = Float64Array.from(r.latenciesMs).sort();
    const pct = (p: number) =>
      sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
    tally.add(r.status2xx, r.durationS, r.non2xx + r.errors, pct(50), pct(99));
    const row = tally.row(`Tributary single at half rate (${rate}/s, open loop)`, ['server']);
    row.note = 'p99 target ≤ 10 ms';
    rows.push(row);
    await load.close();
    await settle();
    await dropStreams(env);
  }

  if (groups.has('batch')) {
    const expressBatch = await startScript(here('./peers/express-batch.ts'), peerEnv);
    const tributaryC = contender('Tributary batch of 100', serve, '/v1/events/batch', SETTINGS.batchSize);
    const peerC = contender('Express batch INSERT', expressBatch, '/v1/events/batch', SETTINGS.batchSize);
    for (const c of [tributaryC, peerC]) {
      await runWrk({
        url: c.server.url,
        path: c.path,
        batch: c.batch,
        connections: SETTINGS.batchConnections,
        threads: 1,
        durationS: 2,
        apiKey: ADMIN_KEY,
      });
    }
    await settle();
    await dropStreams(env);
    const xadd = new Tally({});
    const limitPrefix = `${env.prefix}-limit`;
    let answered = 0;
    for (let r = 0; r < SETTINGS.rounds; r++) {
      const order = r % 2 === 0 ? ['tributary', 'peer', 'xadd'] : ['xadd', 'peer', 'tributary'];
      for (const which of order) {
        log(`round ${r + 1}/${SETTINGS.rounds}: batch ${which} ${SETTINGS.roundS} s`);
        if (which === 'xadd') {
          await runLimit(
            './limits/xadd.ts',
            { REDIS_URL: env.redisUrl, PREFIX: limitPrefix, SECONDS: String(SETTINGS.roundS) },
            xadd,
          );
          await deleteKeys(env.redis, `${limitPrefix}:*`);
        } else if (which === 'peer') {
          await measureWrk(peerC, SETTINGS.batchConnections, env);
        } else {
          await measureWrk(tributaryC, SETTINGS.batchConnections, env);
          await checkBuffer(tributaryC, tributaryC.tally.events - answered, SETTINGS.batchConnections);
          answered = tributaryC.tally.events;
        }
      }
    }
    const tRow = tributaryC.tally.row(tributaryC.name, ['server']);
    const pRow = peerC.tally.row(peerC.name, ['server']);
    const xRow = limitRow('limit: raw XADD, 4 pipelines of 100', xadd);
    tRow.ratios = {
      'raw XADD': round(tRow.eventsPerSec / xRow.eventsPerSec, 3),
      'Express batch': round(tRow.eventsPerSec / pRow.eventsPerSec, 3),
    };
    rows.push(tRow, pRow, xRow);
    await stopChild(expressBatch.child);
  }

  if (groups.has('e2e')) await endToEnd(env, serve, tributaryEnv, report);

  await stopChild(serve.child);
  if (serve.child.exitCode !== 0)
    anomalies.push(`serve exited with ${serve.child.exitCode ?? serve.child.signalCode} on SIGTERM`);
  const serveErrors = serve.stderr().trim();
  if (serveErrors) anomalies.push(`serve wrote to stderr: ${serveErrors.slice(0, 500)}`);
  for (const row of rows) {
    if ((row.failures ?? 0) > 0)
      anomalies.push(`${row.scenario}: ${row.failures} non-2xx responses or socket errors`);
    if ((row.clientCpuPercent ?? 0) >= 90)
      anomalies.push(
        `${row.scenario}: load generator at ${row.clientCpuPercent}% CPU; the client may be the limit`,
      );
  }
}

/** COPY limit, then ingest + workers at an open-loop rate, watching the backlog. */
async function endToEnd(
  env: TestEnv,
  serve: ServerChild,
  tributaryEnv: Record<string, string>,
  report: BenchReport,
) {
  const { rows, checks, anomalies } = report;
  await env.pool.query('TRUNCATE events');
  const copy = new Tally({});
  for (let i = 0; i < SETTINGS.rounds; i++) {
    log(`limit: raw COPY ${SETTINGS.roundS} s`);
    await runLimit(
      './limits/copy.ts',
      { DATABASE_URL: env.databaseUrl, SECONDS: String(SETTINGS.roundS) },
      copy,
    );
  }
  const copyRow = limitRow('limit: raw COPY into events, 10,000 rows per COPY', copy);
  await env.pool.query('TRUNCATE events');
  await dropStreams(env);

  const workers: WorkerChild[] = [];
  for (let i = 0; i < SETTINGS.e2eWorkers; i++) workers.push(await startWorker(tributaryEnv));
  const rate = num('BENCH_E2E_RATE', Math.round(copy.rate / 2));
  const requestsPerS = Math.max(1, Math.round(rate / SETTINGS.batchSize));
  log(
    `end to end: ${requestsPerS * SETTINGS.batchSize} events/s open loop, ${SETTINGS.e2eWorkers} workers, ${SETTINGS.e2eS} s`,
  );
  const load = new LoadGenerator();
  const pids: Record<string, number> = { server: serve.pid, client: load.pid };
  workers.forEach((w, i) => {
    pids[`worker${i}`] = w.pid;
  });
  const tally = new Tally(pids);
  const backlog = async () => streamEntries(env);
  const samples: { t: number; backlog: number; rows: number }[] = [];
  const sampler = setInterval(() => {
    void Promise.all([backlog(), countRows(env)]).then(([b, r]) =>
      samples.push({ t: performance.now(), backlog: b, rows: r }),
    );
  }, 2_000);
  tally.meter.start();
  const started = performance.now();
  const result = await load.run({
    url: serve.url,
    path: '/v1/events/batch',
    kind: 'batch',
    batchSize: SETTINGS.batchSize,
    connections: SETTINGS.batchConnections,
    durationS: SETTINGS.e2eS,
    headers: { 'x-api-key': ADMIN_KEY },
    overallRate: requestsPerS,
  });
  tally.meter.stop();
  clearInterval(sampler);
  await load.close();
  const accepted = result.status2xx * SETTINGS.batchSize;
  // Persisted rate and backlog slope over the window after a 10 s warm-up.
  const window = samples.filter((s) => s.t - started >= 10_000);
  const first = window[0];
  const last = window.at(-1);
  const span = first && last ? (last.t - first.t) / 1000 : 0;
  const persistedRate = span > 0 && first && last ? (last.rows - first.rows) / span : 0;
  const slope = span > 0 && first && last ? (last.backlog - first.backlog) / span : 0;
  const workerNames = workers.map((_, i) => `worker${i}`);
  const ingestRow = tally.row(`end to end: ingest at ${requestsPerS * SETTINGS.batchSize}/s (open loop)`, [
    'server',
  ]);
  ingestRow.events = accepted;
  ingestRow.eventsPerSec = round(accepted / result.durationS);
  const persistRow = tally.row(`end to end: ${SETTINGS.e2eWorkers} workers persisting`, workerNames, false);
  persistRow.events = last?.rows ?? 0;
  persistRow.eventsPerSec = round(persistedRate);
  persistRow.cpuUsPerEvent =
    persistRow.events > 0
      ? round((workerNames.reduce((a, n) => a + tally.meter.cpuS(n), 0) * 1e6) / persistRow.events, 2)
      : null;
  persistRow.ratios = { 'raw COPY': round(persistedRate / copy.rate, 3) };
  persistRow.note = `backlog ${first?.backlog ?? 0} → ${last?.backlog ?? 0} (${round(slope)} events/s)`;
  rows.push(copyRow, ingestRow, persistRow);
  checks['e2e: backlog slope, events/s (0 = flat)'] = round(slope);
  checks['e2e: backlog at end of load'] = last?.backlog ?? 0;

  // Exactly once: after the load, everything answered 202 lands, once.
  const deadline = performance.now() + 60_000;
  let stored = await countRows(env);
  while (stored < accepted && performance.now() < deadline) {
    await sleep(500);
    stored = await countRows(env);
  }
  // Requests still in flight when the load stopped were stored without being counted as answered.
  const inFlight = SETTINGS.batchConnections * SETTINGS.batchSize;
  const { rows: distinct } = await env.pool.query<{ n: string }>(
    'SELECT count(DISTINCT id)::text AS n FROM events',
  );
  checks['e2e: events answered 202'] = accepted;
  checks['e2e: rows stored'] = stored;
  checks['e2e: distinct ids stored'] = Number(distinct[0]?.n ?? 0);
  if (stored < accepted || stored > accepted + inFlight || Number(distinct[0]?.n) !== stored) {
    anomalies.push(
      `e2e: ${stored} rows (${distinct[0]?.n} distinct ids) for ${accepted} events answered 202 (+${inFlight} in flight)`,
    );
  }
  for (const w of workers) await stopChild(w.child);
}

export async function main(): Promise<number> {
  const { values } = parseArgs({ options: { only: { type: 'string' } }, allowPositionals: true });
  const only = (values.only ?? process.env.BENCH_ONLY ?? '').split(',').filter(Boolean);
  const unknown = only.filter((g) => !GROUPS.includes(g as Group));
  if (unknown.length > 0) {
    process.stderr.write(`unknown group(s) ${unknown.join(', ')}; groups: ${GROUPS.join(', ')}\n`);
    return 2;
  }
  const groups = new Set<Group>(only.length > 0 ? (only as Group[]) : GROUPS);
  const env = createTestEnv();
  const report: BenchReport = {
    startedAt: new Date().toISOString(),
    finishedAt: '',
    host: {
      node: process.version,
      cpus: availableParallelism(),
      cpuModel: cpus()[0]?.model ?? '',
      loadAverage: loadavg(),
    },
    settings: { ...SETTINGS, groups: [...groups].join(',') },
    rows: [],
    checks: {},
    anomalies: [],
  };
  let cleaned: Promise<void> | undefined;
  const cleanup = () => {
    cleaned ??= (async () => {
      killAllChildren();
      await deleteKeys(env.redis, `${env.prefix}-*`).catch(() => {});
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
    await bench(env, report, groups);
  } catch (err) {
    if (!interrupted) log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await cleanup();
    return 1;
  }
  await cleanup();
  report.finishedAt = new Date().toISOString();
  report.checks.totalSeconds = round((performance.now() - began) / 1000);
  const file = writeReport(RESULTS, report);
  process.stdout.write(`${formatTable(report.rows)}\n`);
  for (const [k, v] of Object.entries(report.checks)) process.stdout.write(`  ${k}: ${v}\n`);
  for (const a of report.anomalies) process.stdout.write(`! ${a}\n`);
  log(`${report.checks.totalSeconds} s in all; written to ${file} and results/latest.json`);
  return 0;
}

if (import.meta.main) process.exit(await main());
