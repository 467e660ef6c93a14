/** What every scenario measures with: tallies of measured windows, limit children, buffer and table counts. */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { TestEnv } from '../helpers/env.ts';
import { type ServerChild, track } from './children.ts';
import { CpuMeter } from './proc.ts';
import { type BenchReport, type BenchRow, percentile } from './report.ts';
import type { Scenario } from './scenarios.ts';

export const PARTITIONS = 8;

export const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
export const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Lets requests still in flight when a load generator stopped finish on the server. */
export const settle = () => sleep(500);

/** A positive number from the environment, else `fallback`. */
export const envNumber = (name: string, fallback: number) => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
};

/** Rounds and load shape shared by every scenario. */
export const SETTINGS = {
  roundS: envNumber('BENCH_ROUND_S', 5),
  rounds: envNumber('BENCH_ROUNDS', 2),
  singleConnections: 50,
  batchConnections: 10,
  batchSize: 100,
};

/** What a scenario group gets from the run. */
export interface BenchContext {
  env: TestEnv;
  report: BenchReport;
  picked: Set<Scenario>;
  /** `tributary serve` as deployed (test/bench/deployed.ts), started when a picked scenario needs it. */
  serve: () => Promise<ServerChild>;
  /** The same, sampling 1 % of requests into a local OTLP sink; started when a `*-traced` scenario needs it. */
  serveTraced: () => Promise<ServerChild>;
  /**
   * The key the load presents to Tributary: stored, with the ingest scope, a rate limit and the
   * services of the load (deployed.ts); made once `serve` runs.
   */
  ingestKey: () => Promise<string>;
  /** Starts another `serve` with `extra` settings, its log file beside the others. */
  startServe: (extra?: Record<string, string>) => Promise<ServerChild>;
  /** The environment `serve` runs with, for a scenario that starts one with other settings. */
  serveEnv: Record<string, string>;
  peerEnv: Record<string, string>;
  /** Registers what to undo when the bench ends, also on failure or Ctrl-C. */
  onCleanup: (fn: () => Promise<void>) => void;
}

/** events/s of `row` ÷ events/s of each baseline that was measured in this run. */
export function ratios(
  row: BenchRow,
  baselines: Record<string, BenchRow | undefined>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, b] of Object.entries(baselines))
    if (b && b.eventsPerSec > 0) out[name] = round(row.eventsPerSec / b.eventsPerSec, 3);
  return out;
}

/** The Redis server's pid (local, shared), metered alongside every scenario; 0 when unknown. */
let redisPid = 0;

/** Finds the local Redis server's pid, so its CPU can be reported. */
export async function findRedisPid(env: TestEnv): Promise<void> {
  const info = await env.redis.info('server').catch(() => '');
  const pid = Number(/process_id:(\d+)/.exec(info)?.[1] ?? 0);
  redisPid = existsSync(`/proc/${pid}/stat`) ? pid : 0;
}

/** Sums of several measured windows of one scenario. */
export class Tally {
  events = 0;
  seconds = 0;
  failures = 0;
  p50: number[] = [];
  p99: number[] = [];
  /** Every latency of open-loop runs, ms; when present, p50/p99 come from all of them. */
  latencies: number[] = [];
  readonly meter: CpuMeter;
  constructor(pids: Record<string, number>) {
    this.meter = new CpuMeter(redisPid ? { ...pids, redis: redisPid } : pids);
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
  /**
   * The row of this scenario; CPU is summed over `servers`, RSS too unless `rss` is `max`
   * (several processes of one role, such as workers: the largest is what must stay small).
   */
  row(scenario: string, servers: string[], opts: { latency?: boolean; rss?: 'sum' | 'max' } = {}): BenchRow {
    const latency = opts.latency ?? true;
    const cpuS = servers.reduce((a, s) => a + this.meter.cpuS(s), 0);
    const cpu = servers.reduce((a, s) => a + this.meter.cpuPercent(s), 0);
    const rssEach = servers.map((s) => this.meter.peakRssMb(s));
    const rss = opts.rss === 'max' ? Math.max(0, ...rssEach) : rssEach.reduce((a, b) => a + b, 0);
    // Latency of several wrk runs: the worst run's p99 and the median run's p50 (wrk gives no
    // histogram to merge); of open-loop runs, the percentiles of every latency.
    const merged = Float64Array.from(this.latencies).sort();
    const sortedP50 = merged.length ? [percentile(merged, 50) ?? 0] : [...this.p50].sort((a, b) => a - b);
    const p99 = merged.length ? [percentile(merged, 99) ?? 0] : this.p99;
    return {
      scenario,
      events: this.events,
      durationS: round(this.seconds, 2),
      eventsPerSec: round(this.rate),
      p50Ms: latency && sortedP50.length ? round(sortedP50[Math.floor(sortedP50.length / 2)] ?? 0, 2) : null,
      p99Ms: latency && p99.length ? round(Math.max(...p99), 2) : null,
      failures: latency ? this.failures : null,
      peakRssMb: rss > 0 ? round(rss) : null,
      cpuPercent: servers.length ? round(cpu) : null,
      cpuUsPerEvent: this.events > 0 && servers.length ? round((cpuS * 1e6) / this.events, 2) : null,
      clientCpuPercent: this.meter.has('client') ? round(this.meter.cpuPercent('client')) : null,
      redisCpuPercent: this.meter.has('redis') ? round(this.meter.cpuPercent('redis')) : null,
      hostCpuPercent: round(this.meter.hostCpuPercent(availableParallelism())),
      ratios: {},
    };
  }
}

/** The last line a limit script prints; scripts may add fields of their own. */
export interface LimitResult {
  events: number;
  seconds: number;
  [field: string]: unknown;
}

/**
 * Runs a limit script (a child that prints `{"events","seconds"}`) once, metering its CPU
 * and RSS under the name `server` of `tally` (create the tally with `{ server: 0 }`).
 */
export async function runLimit(
  file: string,
  env: Record<string, string>,
  tally: Tally,
): Promise<LimitResult> {
  const child = track(
    spawn(process.execPath, [file], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  tally.meter.start();
  tally.meter.setPid('server', child.pid ?? 0);
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  tally.meter.stop();
  if (code !== 0) throw new Error(`${file} exited with ${code}`);
  const result = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as LimitResult;
  tally.add(result.events, result.seconds);
  return result;
}

/** Entries in Tributary's partition streams under `prefix`: buffered, not yet persisted (pending included). */
export async function streamEntries(env: TestEnv, prefix = env.prefix): Promise<number> {
  const p = env.redis.pipeline();
  for (let i = 0; i < PARTITIONS; i++) p.xlen(`${prefix}:events:{${i}}`);
  const replies = (await p.exec()) ?? [];
  return replies.reduce((sum, [err, n]) => (err ? sum : sum + Number(n)), 0);
}

export async function dropStreams(env: TestEnv, prefix = env.prefix): Promise<void> {
  await env.redis.del(...Array.from({ length: PARTITIONS }, (_, i) => `${prefix}:events:{${i}}`));
}

export const countRows = async (env: TestEnv) =>
  Number((await env.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM events')).rows[0]?.n ?? 0);

/** Waits until the events table stops growing (a peer's queue is drained): its row count and when. */
export async function rowsSettled(env: TestEnv): Promise<{ rows: number; at: number }> {
  let last = { rows: await countRows(env), at: performance.now() };
  for (;;) {
    await sleep(250);
    const rows = await countRows(env);
    if (rows === last.rows) return last;
    last = { rows, at: performance.now() };
  }
}

/** `steps` once per round, in reverse order every other round. */
export async function interleave(steps: { name: string; run: () => Promise<void> }[]): Promise<void> {
  for (let r = 0; r < SETTINGS.rounds; r++) {
    for (const step of r % 2 === 0 ? steps : [...steps].reverse()) {
      log(`round ${r + 1}/${SETTINGS.rounds}: ${step.name} ${SETTINGS.roundS} s`);
      await step.run();
    }
  }
}
