/**
 * `npm run bench [-- --only SCENARIO,...]`: Tributary against the physical limits and the
 * stacks a Node team would otherwise write, on this machine, in one run; `--help` lists the
 * scenarios (BENCH_SCENARIOS or BENCH_ONLY pick them too).
 *
 * Tributary runs as deployed (deployed.ts): the load presents a stored ingest key with a rate
 * limit, bound to the load's services; logs at info go to a file; metrics and the live view
 * are on; tracing is off, or samples 1 % of requests in the `*-traced` scenarios.
 *
 *   single events  bare node:http (the floor), trivial Hono route, Tributary (untraced, 1 %
 *                  traced), Express + pg, Fastify + pg, Express + BullMQ: wrk, closed loop,
 *                  50 connections, taking turns in rounds (A B C…, then …C B A)
 *   half           Tributary single events at half the rate it reached, open loop: p50/p99
 *   live           the live view's cost: single and batch ingest with it off, on with nobody
 *                  listening, and with one SSE listener reading every frame, taking turns
 *   plans          batches of 100 checked against a 20-property tracking plan, against the
 *                  same batches to a service with no plan, taking turns (ratio, target ≥ 0.85)
 *   batches        Tributary batch of 100 (API only; untraced and 1 % traced), Segment /v1/batch of 100 track calls
 *                  (`segment`, reported as a ratio of the native batch), Express batch INSERT
 *                  peer, raw pipelined XADD of the same entries: wrk with 10 connections, taking turns
 *   copy, e2e      raw COPY into the events table, then ingest + workers persisting for
 *                  BENCH_E2E_S (default 60) at an open-loop rate: persisted rows/s, backlog slope
 *   e2e-large      (only when named) ingest + persist on an empty table and with 10M rows
 *                  generated in SQL; every GET /v1/events filter timed (large.ts)
 *   parquet        (only when named) the archive's Parquet writers on BENCH_PARQUET_ROWS rows
 *                  of a private database, against PostgreSQL's COPY out alone (limits/parquet.ts)
 *   metadata-lz4   (only when named) bytes per row of metadata with pglz against lz4 (compression.ts)
 *   materialize    (only when named) the feed's cost to ingest; events/s materialised against INSERT … SELECT (materialize.ts)
 *   source-pg      (only when named) a PostgreSQL table source reading BENCH_SOURCE_ROWS rows
 *                  into the stream, against COPY … TO STDOUT of the same table (sources.ts)
 *
 * Every process is a real child (tributary serve/work, peers, limits, wrk, the open-loop
 * generator) on the local Redis and PostgreSQL, with its own database and Redis prefix,
 * removed at the end (also on failure or Ctrl-C). Knobs: BENCH_ROUND_S (5), BENCH_ROUNDS (2),
 * BENCH_E2E_S (60), BENCH_E2E_RATE or BENCH_E2E_FRACTION (0.6 of COPY), BENCH_WORKERS (2),
 * BENCH_HALF_RATE, BENCH_API_PROCESSES (1); BATCH_SIZE, BATCH_MAX_WAIT_MS, INSERT_CONCURRENCY,
 * DATABASE_POOL_SIZE and DEDUPE_WINDOW_S are passed to Tributary. The bench reports; it
 * never fails because numbers are slow.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createTestEnv, deleteKeys, type TestEnv } from '../helpers/env.ts';
import { runTributary } from '../helpers/processes.ts';
import { killAllChildren, type ServerChild, startServe, stopChild } from './children.ts';
import { metadataCompression } from './compression.ts';
import { createIngestKey, type OtlpSink, startOtlpSink, tracedEnv, WRK_SERVICES } from './deployed.ts';
import { copyLimit, endToEnd } from './e2e.ts';
import { halfRate } from './half-rate.ts';
import { batches, singleEvents } from './ingest.ts';
import { largeTable } from './large.ts';
import { parquetLimit } from './limits/parquet.ts';
import { liveOverhead } from './live.ts';
import { materializeBench } from './materialize.ts';
import { type BenchContext, envNumber, findRedisPid, log, PARTITIONS, round, SETTINGS } from './measure.ts';
import { PLAN_SERVICES, plansOverhead } from './plans.ts';
import { type BenchReport, formatTable, writeReport } from './report.ts';
import { type Scenario, scenarioHelp, selectScenarios } from './scenarios.ts';
import { sourceThroughput } from './sources.ts';
import { ensureWrk } from './wrk.ts';

const RESULTS = fileURLToPath(new URL('./results', import.meta.url));

/** Which code was measured, so runs can be compared. */
function describeCode(): string {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** Every service the bench's load sends: the deployed key is bound to these. */
const BENCH_SERVICES = [...WRK_SERVICES, ...PLAN_SERVICES];

const PASS_THROUGH = [
  'BATCH_SIZE',
  'BATCH_MAX_WAIT_MS',
  'INSERT_CONCURRENCY',
  'DATABASE_POOL_SIZE',
  'DEDUPE_WINDOW_S',
];

async function bench(
  env: TestEnv,
  report: BenchReport,
  picked: Set<Scenario>,
  cleanups: (() => Promise<void>)[],
): Promise<void> {
  ensureWrk();
  const tributaryEnv = env.env({
    LOG_LEVEL: 'info',
    STREAM_PARTITIONS: String(PARTITIONS),
    API_PROCESSES: String(envNumber('BENCH_API_PROCESSES', 1)),
    BUFFER_MAX_EVENTS: '50000000',
    // Service settings to try, passed through when set (e.g. BATCH_SIZE=2000 npm run bench).
    ...Object.fromEntries(
      PASS_THROUGH.flatMap((k) => (process.env[k] ? [[k, process.env[k] as string]] : [])),
    ),
  });
  await findRedisPid(env);
  log(`database ${env.name}, Redis prefix ${env.prefix}: migrating`);
  const migrated = await runTributary(['migrate'], tributaryEnv);
  if (migrated.code !== 0) throw new Error(`migrate exited with ${migrated.code}: ${migrated.stderr}`);
  // Each server's logs go to a file of its own, as a container runtime would keep them.
  const logDir = mkdtempSync(join(tmpdir(), 'tributary-bench-'));
  cleanups.push(async () => rmSync(logDir, { recursive: true, force: true }));
  const servers: { name: string; server: ServerChild; logFile: string }[] = [];
  const start = async (name: string, extra: Record<string, string> = {}) => {
    const logFile = join(logDir, `${name}-${servers.length}.log`);
    const server = await startServe({ ...tributaryEnv, ...extra }, { logFile });
    servers.push({ name, server, logFile });
    return server;
  };
  let serve: Promise<ServerChild> | undefined;
  let traced: Promise<ServerChild> | undefined;
  let key: Promise<string> | undefined;
  let sink: OtlpSink | undefined;
  const ctx: BenchContext = {
    env,
    report,
    picked,
    serve: () => {
      serve ??= start('serve');
      return serve;
    },
    serveTraced: () => {
      traced ??= (async () => {
        sink = await startOtlpSink();
        cleanups.push(() => sink?.close() ?? Promise.resolve());
        return start('serve-traced', tracedEnv(sink));
      })();
      return traced;
    },
    ingestKey: () => {
      key ??= (async () => createIngestKey(await ctx.serve(), 'bench-ingest', BENCH_SERVICES))();
      return key;
    },
    startServe: (extra) => start('serve-other', extra),
    serveEnv: tributaryEnv,
    peerEnv: {
      DATABASE_URL: env.databaseUrl,
      REDIS_URL: env.redisUrl,
      BULLMQ_PREFIX: `${env.prefix}-bull`,
      BULLMQ_QUEUE: 'events',
    },
    onCleanup: (fn) => {
      cleanups.push(fn);
    },
  };

  const singleRate = await singleEvents(ctx);
  if (picked.has('half')) await halfRate(ctx, singleRate);
  await batches(ctx);
  await liveOverhead(ctx);
  await plansOverhead(ctx);
  const copyRate = picked.has('copy') ? await copyLimit(ctx) : 0;
  if (picked.has('e2e')) await endToEnd(ctx, tributaryEnv, copyRate);
  await largeTable(ctx);
  if (picked.has('parquet')) await parquetLimit(ctx);
  await sourceThroughput(ctx);
  await metadataCompression(ctx);
  await materializeBench(ctx);

  for (const { name, server, logFile } of servers) {
    await stopChild(server.child);
    if (server.child.exitCode !== 0)
      report.anomalies.push(
        `${name} exited with ${server.child.exitCode ?? server.child.signalCode} on SIGTERM`,
      );
    const serveErrors = server.stderr().trim();
    if (serveErrors) report.anomalies.push(`${name} wrote to stderr: ${serveErrors.slice(0, 500)}`);
    report.checks[`${name}: log written, MB`] = round(statSync(logFile).size / 1e6, 1);
  }
  if (sink)
    report.checks['serve-traced: OTLP exports received (requests / MB)'] =
      `${sink.received().requests} / ${round(sink.received().bytes / 1e6, 2)}`;
  for (const row of report.rows) {
    if ((row.failures ?? 0) > 0)
      report.anomalies.push(`${row.scenario}: ${row.failures} non-2xx responses or socket errors`);
    if ((row.clientCpuPercent ?? 0) >= 90)
      report.anomalies.push(
        `${row.scenario}: load generator at ${row.clientCpuPercent}% CPU; the client may be the limit`,
      );
  }
}

export async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { only: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(`${scenarioHelp()}\n`);
    return 0;
  }
  let picked: Set<Scenario>;
  try {
    picked = selectScenarios(values.only ?? process.env.BENCH_SCENARIOS ?? process.env.BENCH_ONLY ?? '');
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n\n${scenarioHelp()}\n`);
    return 2;
  }
  log(`scenarios: ${[...picked].join(', ')}`);
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
    code: describeCode(),
    settings: {
      ...SETTINGS,
      e2eS: envNumber('BENCH_E2E_S', 60),
      e2eWorkers: envNumber('BENCH_WORKERS', 2),
      apiProcesses: envNumber('BENCH_API_PROCESSES', 1),
      scenarios: [...picked].join(','),
    },
    rows: [],
    checks: {},
    anomalies: [],
  };
  let cleaned: Promise<void> | undefined;
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = () => {
    cleaned ??= (async () => {
      killAllChildren();
      for (const fn of cleanups) await fn().catch((err: unknown) => log(`cleanup failed: ${String(err)}`));
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
    await bench(env, report, picked, cleanups);
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
