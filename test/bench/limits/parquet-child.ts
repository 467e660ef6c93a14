/**
 * Limit child: one Parquet pipeline (PIPELINE = duckdb | fifo | wasm | hyparquet, or a read-only
 * baseline pgcopy | pgcursor) over TABLE of DATABASE_URL into OUT, in a fresh process so its
 * peak RSS is its own. Timed from connecting to PostgreSQL to the file closed. Prints one
 * JSON line: events (rows), seconds, bytes (of OUT: the CSV for pgcopy), stages.
 */
import { stat } from 'node:fs/promises';
import pg from 'pg';
import { pgCopyOnly, pinSession, type Stages, viaDuckDb, viaDuckDbFifo } from './parquet-duckdb.ts';
import { pgCursorOnly, viaHyparquet, viaParquetWasm } from './parquet-js.ts';

const pipelineName = process.env.PIPELINE ?? '';
const table = process.env.TABLE ?? 'events';
const out = process.env.OUT ?? '';
const workDir = process.env.WORK_DIR ?? '';
const stages: Stages = {};

const started = performance.now();
const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
await client.connect();
await pinSession(client);
let rows: number;
switch (pipelineName) {
  case 'pgcopy':
    rows = await pgCopyOnly(client, table, out);
    break;
  case 'pgcursor':
    rows = await pgCursorOnly(client, table);
    break;
  case 'duckdb':
    rows = await viaDuckDb(client, table, out, workDir, stages, process.env.DUCKDB_MEMORY_LIMIT);
    break;
  case 'fifo':
    rows = await viaDuckDbFifo(client, table, out, workDir, process.env.DUCKDB_MEMORY_LIMIT);
    break;
  case 'wasm':
    rows = await viaParquetWasm(client, table, out);
    break;
  case 'hyparquet':
    rows = await viaHyparquet(client, table, out);
    break;
  default:
    throw new Error(`unknown PIPELINE "${pipelineName}"`);
}
const elapsed = (performance.now() - started) / 1000;
await client.end();
const bytes = pipelineName === 'pgcursor' ? 0 : (await stat(out)).size;
process.stdout.write(`${JSON.stringify({ events: rows, seconds: elapsed, bytes, stages })}\n`);
