/**
 * The archive's Parquet writer through DuckDB (in process): PostgreSQL sends the rows as
 * CSV (COPY … TO STDOUT), DuckDB reads them with read_csv and writes one zstd Parquet file
 * with typed columns (timestamps as UTC-adjusted microseconds, metadata as JSON, id as text).
 *
 *   duckdb   (a) the CSV streamed into a temporary file, then converted: two stages
 *   fifo     (a') the CSV streamed through a named pipe that DuckDB reads at the same time
 *   pgcopy   baseline: the COPY into a file alone
 *
 * The writers in JavaScript (parquet-wasm, hyparquet-writer) are in parquet-js.ts.
 */
import { execFileSync } from 'node:child_process';
import { constants, createWriteStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';

/** Rows per row group for every writer: DuckDB's default, so files compare. */
export const ROW_GROUP_ROWS = 122_880;

/** Session settings the text of timestamps depends on; set before any COPY or FETCH. */
export async function pinSession(client: pg.Client): Promise<void> {
  await client.query(`SET TimeZone = 'UTC'`);
  await client.query(`SET DateStyle = 'ISO, YMD'`);
}

/**
 * PostgreSQL side of `duckdb`. CSV, every non-NULL value quoted (FORCE_QUOTE *), NULL as
 * an unquoted empty field (the CSV default), so NULL and '' differ; `"` doubled inside
 * quotes. Timestamps in ISO with offset (`2026-04-01 00:00:00.000001+00`), jsonb as its
 * text form, booleans as t/f, uuid in lowercase with dashes.
 */
export const pgCopyCsv = (table: string) =>
  `COPY (SELECT id, occurred_at, received_at, service, type, user_id, message, metadata, anonymized
   FROM ${table} ORDER BY occurred_at, id)
   TO STDOUT WITH (FORMAT csv, HEADER false, FORCE_QUOTE *, ENCODING 'UTF8')`;

const sqlString = (s: string) => `'${s.replace(/'/g, "''")}'`;

/**
 * DuckDB side of `duckdb`: every CSV column read as text, with no sniffing, then cast. A
 * quoted empty field is '' (allow_quoted_nulls=false), an unquoted empty one is NULL; the
 * `::JSON` cast validates the jsonb text and keeps it byte for byte (json() would re-print it).
 */
export const duckdbCsvToParquet = (csv: string, out: string) =>
  `COPY (
     SELECT id,
            occurred_at::TIMESTAMPTZ AS occurred_at,
            received_at::TIMESTAMPTZ AS received_at,
            service, type, user_id, message,
            metadata::JSON AS metadata,
            anonymized::BOOLEAN AS anonymized
     FROM read_csv(${sqlString(csv)},
       columns = {'id': 'VARCHAR', 'occurred_at': 'VARCHAR', 'received_at': 'VARCHAR',
                  'service': 'VARCHAR', 'type': 'VARCHAR', 'user_id': 'VARCHAR',
                  'message': 'VARCHAR', 'metadata': 'VARCHAR', 'anonymized': 'VARCHAR'},
       auto_detect = false, header = false, delim = ',', quote = '"', escape = '"',
       new_line = '\\n', nullstr = '', allow_quoted_nulls = false, strict_mode = true,
       encoding = 'utf-8', max_line_size = 2097152)
   ) TO ${sqlString(out)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${ROW_GROUP_ROWS})`;

/** What a pipeline reports besides rows and bytes: seconds per stage. */
export type Stages = Record<string, number>;

const seconds = (since: number) => (performance.now() - since) / 1000;

/** Streams the COPY into `file` (a file or a named pipe); returns its rows. */
async function copyCsvToFile(client: pg.Client, table: string, file: string, signal?: AbortSignal) {
  const stream = client.query(copyTo(pgCopyCsv(table)));
  await pipeline(stream, createWriteStream(file), { signal });
  return stream.rowCount;
}

/** Runs the DuckDB conversion; returns the rows it wrote. */
async function convert(duck: DuckDBConnection, csv: string, out: string): Promise<number> {
  return (await duck.run(duckdbCsvToParquet(csv, out))).rowsChanged;
}

/** A file is whole only if DuckDB wrote every row PostgreSQL sent. */
function sameCount(pgRows: number, written: number): number {
  if (written !== pgRows) throw new Error(`DuckDB wrote ${written} rows, PostgreSQL sent ${pgRows}`);
  return written;
}

/** Baseline: the COPY into `csv` alone (left for the caller to measure and remove). */
export async function pgCopyOnly(client: pg.Client, table: string, csv: string): Promise<number> {
  return copyCsvToFile(client, table, csv);
}

async function openDuckDb(workDir: string, memoryLimit: string) {
  const db = await DuckDBInstance.create(':memory:', {
    memory_limit: memoryLimit,
    temp_directory: join(workDir, 'duckdb.tmp'),
    // Nothing is fetched from the network; parquet and json are built in.
    autoinstall_known_extensions: 'false',
  });
  const duck = await db.connect();
  await duck.run(`SET TimeZone = 'UTC'`);
  return {
    duck,
    close() {
      duck.closeSync();
      db.closeSync();
    },
  };
}

/** (a) COPY into a temporary CSV file, then DuckDB converts it: two stages, the whole CSV on disk. */
export async function viaDuckDb(
  client: pg.Client,
  table: string,
  out: string,
  workDir: string,
  stages: Stages,
  memoryLimit = '256MB',
): Promise<number> {
  const csv = join(workDir, 'rows.csv');
  let t = performance.now();
  const rows = await copyCsvToFile(client, table, csv);
  stages.pgCopy = seconds(t);
  t = performance.now();
  const { duck, close } = await openDuckDb(workDir, memoryLimit);
  try {
    sameCount(rows, await convert(duck, csv, out));
  } finally {
    close();
    await rm(csv);
  }
  stages.duckdb = seconds(t);
  return rows;
}

/**
 * (a′) The same through a named pipe: DuckDB reads the CSV while PostgreSQL writes it, so
 * the stages overlap and nothing but the Parquet file touches the disk. DuckDB cannot tell
 * a COPY that failed halfway from the end of the data: the file counts only when both sides
 * succeeded (the caller discards it otherwise).
 */
export async function viaDuckDbFifo(
  client: pg.Client,
  table: string,
  out: string,
  workDir: string,
  memoryLimit = '256MB',
): Promise<number> {
  const fifo = join(workDir, 'rows.fifo');
  execFileSync('mkfifo', ['-m', '600', fifo]);
  const { duck, close } = await openDuckDb(workDir, memoryLimit);
  const abort = new AbortController();
  try {
    const converting = convert(duck, fifo, out).catch(async (err: unknown) => {
      // The writer may be blocked opening the pipe for a reader that will never come: stop the
      // COPY, and open the pipe once without blocking so that open returns (and then fails).
      abort.abort(err);
      await (await open(fifo, constants.O_RDONLY | constants.O_NONBLOCK)).close();
      throw err;
    });
    // Both settle before anything is closed: DuckDB must not be closed while it still reads.
    const [copied, converted] = await Promise.allSettled([
      copyCsvToFile(client, table, fifo, abort.signal),
      converting,
    ]);
    if (converted.status === 'rejected') throw converted.reason;
    if (copied.status === 'rejected') throw copied.reason;
    return sameCount(copied.value, converted.value);
  } finally {
    close();
    await rm(fifo);
  }
}
