import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** One measured scenario. Null where a measure does not apply. */
export interface BenchRow {
  scenario: string;
  /** Events accepted (ingest, peers), requests answered (baseline), entries or rows written (limits). */
  events: number;
  durationS: number;
  eventsPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Non-2xx responses and socket errors. */
  failures: number | null;
  /** Peak RSS of the process(es) under test, MB. */
  peakRssMb: number | null;
  /** CPU of the process(es) under test, % of one core. */
  cpuPercent: number | null;
  cpuUsPerEvent: number | null;
  /** CPU of the load generator, % of one core; near 100 means the client was the limit. */
  clientCpuPercent: number | null;
  /** CPU of the (shared) Redis server, % of one core. */
  redisCpuPercent: number | null;
  /** Busy share of the whole machine, % of one core (200 = both cores of 2 busy): other users included. */
  hostCpuPercent: number | null;
  /** events/s of this row ÷ events/s of the named row, measured in the same run. */
  ratios: Record<string, number>;
  note?: string;
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  host: { node: string; cpus: number; cpuModel: string; loadAverage: number[] };
  /** The code measured: `git describe --always --dirty` of the checkout. */
  code: string;
  settings: Record<string, number | string>;
  rows: BenchRow[];
  checks: Record<string, number | string | boolean>;
  anomalies: string[];
}

const group = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

function fmt(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return digits === 0 ? group.format(value) : value.toFixed(digits);
}

const COLUMNS: { title: string; cell: (r: BenchRow) => string }[] = [
  { title: 'scenario', cell: (r) => r.scenario },
  { title: 'events/s', cell: (r) => fmt(r.eventsPerSec) },
  { title: 'p50 ms', cell: (r) => fmt(r.p50Ms, 2) },
  { title: 'p99 ms', cell: (r) => fmt(r.p99Ms, 2) },
  { title: 'fail', cell: (r) => fmt(r.failures) },
  { title: 'RSS MB', cell: (r) => fmt(r.peakRssMb) },
  { title: 'CPU %', cell: (r) => fmt(r.cpuPercent) },
  { title: 'CPU µs/ev', cell: (r) => fmt(r.cpuUsPerEvent, 1) },
  { title: 'client CPU %', cell: (r) => fmt(r.clientCpuPercent) },
  { title: 'Redis CPU %', cell: (r) => fmt(r.redisCpuPercent) },
  { title: 'host CPU %', cell: (r) => fmt(r.hostCpuPercent) },
  {
    title: 'ratio (events/s ÷ baseline, same run); note',
    cell: (r) =>
      [
        Object.entries(r.ratios)
          .map(([name, v]) => `${v.toFixed(2)}× ${name}`)
          .join(', '),
        r.note ?? '',
      ]
        .filter(Boolean)
        .join('; '),
  },
];

/** A fixed-width text table: numbers right-aligned, text left-aligned. */
export function formatTable(rows: BenchRow[]): string {
  const cells = rows.map((r) => COLUMNS.map((c) => c.cell(r)));
  const widths = COLUMNS.map((c, i) =>
    Math.max(c.title.length, ...cells.map((row) => (row[i] ?? '').length)),
  );
  const line = (values: string[]) =>
    values
      .map((v, i) =>
        i === 0 || i === COLUMNS.length - 1 ? v.padEnd(widths[i] ?? 0) : v.padStart(widths[i] ?? 0),
      )
      .join('  ')
      .trimEnd();
  return [line(COLUMNS.map((c) => c.title)), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join(
    '\n',
  );
}

/** `latest.json` plus a copy named after the start time, to compare runs. */
export function writeReport(dir: string, report: BenchReport): string {
  mkdirSync(dir, { recursive: true });
  const text = `${JSON.stringify(report, null, 2)}\n`;
  writeFileSync(join(dir, 'latest.json'), text);
  const stamped = join(dir, `${report.startedAt.replace(/[:.]/g, '-')}.json`);
  writeFileSync(stamped, text);
  mkdirSync(dirname(stamped), { recursive: true });
  return stamped;
}

export function percentile(sorted: ArrayLike<number>, p: number): number | null {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? null;
}
