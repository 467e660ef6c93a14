/**
 * Scenario `parquet`: which writer the archive should use. BENCH_PARQUET_ROWS (1,000,000)
 * realistic rows in a private database `bench_parquet_<pid>`, archived to one zstd Parquet
 * file by each pipeline of parquet-duckdb.ts and parquet-js.ts, each run in a fresh child
 * (parquet-child.ts) so its peak RSS is its own, taking turns for BENCH_ROUNDS rounds (order
 * reversed every other round). Rows/s are end to end, PostgreSQL read included; the baseline
 * is PostgreSQL's COPY to a file alone, measured in the same rounds. Every file is read back
 * with DuckDB and compared with PostgreSQL (parquet-verify.ts) once. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { BASE_DATABASE_URL } from '../../helpers/env.ts';
import { type BenchContext, envNumber, log, ratios, round, runLimit, SETTINGS, Tally } from '../measure.ts';
import type { BenchRow } from '../report.ts';
import { loadRows, TABLE } from './parquet-rows.ts';
import { type Expected, expectedFromPg, type ReadBack, verifyParquet } from './parquet-verify.ts';

const CHILD = fileURLToPath(new URL('./parquet-child.ts', import.meta.url));
const OWN_DB = /^bench_parquet_\d+$/;

interface Pipeline {
  key: string;
  title: string;
  /** Writes Parquet (read back and compared). */
  writes: boolean;
  /** Writes the CSV that (a) keeps on disk for a while. */
  csv?: boolean;
}

const PIPELINES: Pipeline[] = [
  { key: 'pgcopy', title: 'PostgreSQL COPY csv to a file only (baseline)', writes: false, csv: true },
  { key: 'pgcursor', title: 'PostgreSQL cursor FETCH 10,000 only', writes: false },
  { key: 'duckdb', title: '(a) COPY csv → temp file → DuckDB read_csv → COPY parquet', writes: true },
  { key: 'fifo', title: "(a') COPY csv → named pipe → DuckDB, both at once", writes: true },
  { key: 'wasm', title: '(b) cursor → apache-arrow → parquet-wasm stream', writes: true },
  { key: 'hyparquet', title: '(c) cursor → hyparquet-writer', writes: true },
];

const urlWithDb = (db: string) => {
  const u = new URL(BASE_DATABASE_URL);
  u.pathname = `/${db}`;
  return u.toString();
};

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: urlWithDb('postgres') });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Drops the scenario's database; refuses any other name. */
async function dropOwnDatabase(name: string): Promise<void> {
  if (!OWN_DB.test(name)) throw new Error(`refusing to drop "${name}": not a bench_parquet database`);
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`));
}

async function prepare(name: string, rows: number): Promise<Expected> {
  await admin((c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`));
  const client = new pg.Client({ connectionString: urlWithDb(name) });
  await client.connect();
  try {
    const began = performance.now();
    await loadRows(client, rows);
    log(
      `parquet: ${rows} rows loaded in ${round((performance.now() - began) / 1000)} s; reading expected values`,
    );
    return await expectedFromPg(client, TABLE);
  } finally {
    await client.end();
  }
}

interface Outcome {
  tally: Tally;
  bytes: number;
  rows: number;
  stages: Record<string, number>;
  readBack?: ReadBack;
}

export async function parquetLimit(ctx: BenchContext): Promise<void> {
  const name = `bench_parquet_${process.pid}`;
  const rows = envNumber('BENCH_PARQUET_ROWS', 1_000_000);
  const dir = await mkdtemp(join(tmpdir(), `${name}-`));
  ctx.onCleanup(async () => {
    await dropOwnDatabase(name);
    await rm(dir, { recursive: true, force: true });
  });
  log(`parquet: database ${name}, ${rows} rows, files in ${dir}`);
  const expected = await prepare(name, rows);
  const outcomes = new Map<string, Outcome>(
    PIPELINES.map((p) => [p.key, { tally: new Tally({ server: 0 }), bytes: 0, rows: 0, stages: {} }]),
  );
  for (let r = 0; r < SETTINGS.rounds; r++) {
    for (const p of r % 2 === 0 ? PIPELINES : [...PIPELINES].reverse()) {
      const o = outcomes.get(p.key) as Outcome;
      const out = join(dir, p.csv ? `${p.key}.csv` : `${p.key}.parquet`);
      log(`parquet round ${r + 1}/${SETTINGS.rounds}: ${p.key}`);
      const result = await runLimit(
        CHILD,
        { DATABASE_URL: urlWithDb(name), TABLE, PIPELINE: p.key, OUT: out, WORK_DIR: dir },
        o.tally,
      );
      o.bytes = Number(result.bytes ?? 0);
      o.rows = result.events;
      const stages = (result.stages ?? {}) as Record<string, number>;
      for (const [k, v] of Object.entries(stages)) o.stages[k] = (o.stages[k] ?? 0) + v;
      if (p.writes && !o.readBack) o.readBack = await verifyParquet(out, expected);
      await rm(out, { force: true });
    }
  }
  report(ctx, outcomes);
  await dropOwnDatabase(name);
  await rm(dir, { recursive: true, force: true });
}

function report(ctx: BenchContext, outcomes: Map<string, Outcome>): void {
  const { report } = ctx;
  const made: BenchRow[] = [];
  for (const p of PIPELINES) {
    const o = outcomes.get(p.key) as Outcome;
    const row = o.tally.row(`parquet: ${p.title}`, ['server'], { latency: false });
    const perRow = o.rows > 0 ? o.bytes / o.rows : 0;
    const stages = Object.entries(o.stages)
      .map(([k, v]) => `${k} ${round(v / SETTINGS.rounds, 2)} s`)
      .join(', ');
    const rb = o.readBack;
    const readBack = rb
      ? [
          rb.valueProblems.length === 0
            ? 'DuckDB reads every value back identical'
            : `values differ: ${rb.valueProblems.join('; ')}`,
          rb.typeProblems.length === 0 ? '' : `types: ${rb.typeProblems.join('; ')}`,
        ]
      : [];
    const size = p.writes ? `${round(perRow, 1)} B/row` : p.csv ? `CSV ${round(perRow, 1)} B/row` : '';
    row.note = [size, stages, ...readBack].filter(Boolean).join('; ');
    made.push(row);
    if (rb) {
      report.checks[`parquet ${p.key}: bytes per row`] = round(perRow, 1);
      report.checks[`parquet ${p.key}: values read back identical`] = rb.valueProblems.length === 0;
      report.checks[`parquet ${p.key}: types`] = rb.types;
      if (rb.valueProblems.length > 0)
        report.anomalies.push(`parquet ${p.key}: values differ: ${rb.valueProblems.join('; ')}`);
    }
  }
  const baseline = made[0];
  for (const row of made.slice(1)) row.ratios = ratios(row, { 'PG COPY out': baseline });
  report.rows.push(...made);
}
