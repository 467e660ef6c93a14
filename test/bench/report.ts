import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** One scenario's outcome; null where a measure does not apply (e.g. latency of the worker). */
export interface BenchRow {
  scenario: string;
  /** Events accepted (ingest), requests answered (baseline) or rows persisted (worker). */
  events: number;
  durationS: number;
  eventsPerSec: number;
  requestsPerSec: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  non2xx: number | null;
  errors: number | null;
  /** Status code → count, for the load scenarios. */
  statusCodes: Record<string, number> | null;
  /** RSS of the process under test once started, before any load. */
  startRssMb: number;
  /** Peak RSS of the process under test, sampled every 100 ms. */
  peakRssMb: number;
  /** CPU of the process under test, % of one core (utime + stime over wall time). */
  cpuPercent: number;
  /** CPU time of the process under test per event (per request for the baseline). */
  cpuUsPerEvent: number;
  /** CPU of the load generator, % of one core; near 100 means the client, not the server, was the limit. */
  clientCpuPercent: number | null;
  /** CPU of redis-server, % of one core, when its process is visible here. */
  redisCpuPercent: number | null;
  /** Busy CPU of the whole machine, % of one core (200 = both cores of a 2-core host). */
  hostCpuPercent: number;
  /** This row ÷ the trivial route: events/s, p50, p99 and CPU per event (single-event ingest only). */
  ratioEventsPerSec: number | null;
  ratioP50: number | null;
  ratioP99: number | null;
  ratioCpuPerEvent: number | null;
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  host: { node: string; cpus: number; loadAverage: number[] };
  settings: Record<string, number | string>;
  rows: BenchRow[];
  checks: Record<string, number | string | boolean>;
  anomalies: string[];
}

const group = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

function fmt(value: number | null, digits = 0): string {
  if (value === null || !Number.isFinite(value)) return '—';
  return digits === 0 ? group.format(value) : value.toFixed(digits);
}

const COLUMNS: { title: string; cell: (r: BenchRow) => string }[] = [
  { title: 'scenario', cell: (r) => r.scenario },
  { title: 'events', cell: (r) => fmt(r.events) },
  { title: 'ev/s', cell: (r) => fmt(r.eventsPerSec) },
  { title: 'req/s', cell: (r) => fmt(r.requestsPerSec) },
  { title: 'p50 ms', cell: (r) => fmt(r.p50Ms, 2) },
  { title: 'p99 ms', cell: (r) => fmt(r.p99Ms, 2) },
  { title: 'non-2xx', cell: (r) => fmt(r.non2xx) },
  { title: 'errors', cell: (r) => fmt(r.errors) },
  { title: 'RSS MB', cell: (r) => fmt(r.peakRssMb) },
  { title: 'CPU %', cell: (r) => fmt(r.cpuPercent) },
  { title: 'CPU µs/ev', cell: (r) => fmt(r.cpuUsPerEvent, 1) },
  { title: 'client CPU %', cell: (r) => fmt(r.clientCpuPercent) },
  { title: 'host CPU %', cell: (r) => fmt(r.hostCpuPercent) },
  { title: 'ev/s ÷ base', cell: (r) => fmt(r.ratioEventsPerSec, 2) },
  { title: 'p50 ÷ base', cell: (r) => fmt(r.ratioP50, 2) },
  { title: 'p99 ÷ base', cell: (r) => fmt(r.ratioP99, 2) },
  { title: 'CPU/ev ÷ base', cell: (r) => fmt(r.ratioCpuPerEvent, 2) },
];

/** One aligned text table: the scenario column left-aligned, numbers right-aligned. */
export function formatTable(rows: BenchRow[]): string {
  const cells = [COLUMNS.map((c) => c.title), ...rows.map((r) => COLUMNS.map((c) => c.cell(r)))];
  const widths = COLUMNS.map((_, i) => Math.max(...cells.map((line) => (line[i] ?? '').length)));
  const render = (line: string[]) =>
    line
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const [head, ...body] = cells;
  return [render(head ?? []), rule, ...body.map(render)].join('\n');
}

export function writeReport(path: string, report: BenchReport): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: Float64Array, p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1] ?? null;
}
