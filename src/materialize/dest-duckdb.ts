import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import type { TableShape } from '../store/mat-changes.repo.ts';
import {
  type Destination,
  DestinationMovedError,
  type DestinationState,
  duckType,
  type Sync,
  stillAt,
} from './destination.ts';

/**
 * A materialisation's tables in a DuckDB file (ARCHITECTURE §17), with DuckDB's core SQL
 * only (no extension is downloaded). Each sync is one DuckDB transaction: the rows of the
 * changed keys deleted, the current ones inserted from the sync's CSV files, and the
 * position in `_tributary_sync` moved. The file is opened for each sync and closed after,
 * so it is free between syncs for readers and for another process taking the lease.
 * DuckDB's SQL, run in process on a file, not PostgreSQL's.
 */

const id = (name: string) => `"${name.replaceAll('"', '""')}"`;
const lit = (text: string) => `'${text.replaceAll("'", "''")}'`;

/** `read_csv` of a sync file with the columns given (types as the CSV holds them). */
export function readCsv(path: string, columns: readonly { name: string; csv: string }[]): string {
  const spec = columns.map((c) => `${lit(c.name)}: ${lit(c.csv)}`).join(', ');
  return `read_csv(${lit(path)}, header = false, delim = ',', quote = '"', escape = '"',
    allow_quoted_nulls = false, auto_detect = false, strict_mode = true, columns = {${spec}})`;
}

/** The SELECT list turning CSV columns into the table's types. */
export function castColumns(shape: TableShape): string {
  return shape.columns
    .map((c) => {
      const t = duckType(c.type);
      if (c.type === 'boolean')
        return `CASE ${id(c.name)} WHEN 't' THEN true WHEN 'f' THEN false END AS ${id(c.name)}`;
      return t.csv === t.type ? id(c.name) : `${id(c.name)}::${t.type} AS ${id(c.name)}`;
    })
    .join(', ');
}

export const csvColumnsOf = (shape: TableShape) =>
  shape.columns.map((c) => ({ name: c.name, csv: duckType(c.type).csv }));

export class DuckDbDestination implements Destination {
  readonly granularity = 'rows';
  readonly location: string;
  readonly #path: string;

  constructor(path: string) {
    this.#path = path;
    this.location = `duckdb://${path}`;
  }

  async #open<T>(fn: (conn: DuckDBConnection) => Promise<T>): Promise<T> {
    await mkdir(dirname(this.#path), { recursive: true });
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const db: DuckDBInstance = await openLocked(() => DuckDBInstance.create(this.#path, { threads: '2' }));
    const conn = await db.connect();
    try {
      await conn.run("SET TimeZone = 'UTC'");
      return await fn(conn);
    } finally {
      conn.closeSync();
      db.closeSync();
    }
  }

  state(): Promise<DestinationState | null> {
    return this.#open(async (conn) => ((await hasTable(conn, '_tributary_sync')) ? readState(conn) : null));
  }

  apply(sync: Sync): Promise<void> {
    return this.#open(async (conn) => {
      await conn.run('BEGIN TRANSACTION');
      try {
        await conn.run(
          'CREATE TABLE IF NOT EXISTS _tributary_sync (generation VARCHAR, xid VARCHAR, seq BIGINT, synced_at TIMESTAMPTZ)',
        );
        // The file is this process's alone while open: a sync applies only from the state it began with.
        if (!stillAt(await readState(conn), sync.expected))
          throw new DestinationMovedError(`${this.location} moved on since the sync began`);
        if (sync.full) {
          const r = await conn.runAndReadAll(
            `SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND table_type = 'BASE TABLE'
                AND table_name <> '_tributary_sync'`,
          );
          for (const [t] of r.getRows() as [string][]) await conn.run(`DROP TABLE ${id(t)}`);
        }
        for (const shape of sync.shapes) await ensureTable(conn, shape);
        for (const t of sync.tables) {
          const table = id(t.shape.table);
          if (t.keysCsv !== undefined && !sync.full) {
            const keyColumns = t.shape.key.map((k) => ({
              name: k,
              csv: duckType(t.shape.columns.find((c) => c.name === k)?.type ?? 'text').csv,
            }));
            const on = t.shape.key
              .map((k) => {
                const type = duckType(t.shape.columns.find((c) => c.name === k)?.type ?? 'text').type;
                return `d.${id(k)} = k.${id(k)}::${type}`;
              })
              .join(' AND ');
            await conn.run(`DELETE FROM ${table} d USING ${readCsv(t.keysCsv, keyColumns)} k WHERE ${on}`);
          }
          const names = t.shape.columns.map((c) => id(c.name)).join(', ');
          await conn.run(
            `INSERT INTO ${table} (${names}) SELECT ${castColumns(t.shape)} FROM ${readCsv(t.rowsCsv, csvColumnsOf(t.shape))}`,
          );
        }
        await conn.run('DELETE FROM _tributary_sync');
        await conn.run(
          `INSERT INTO _tributary_sync VALUES (${lit(sync.generation)}, ${lit(sync.position.xid)}, ${sync.position.seq}, now())`,
        );
        await conn.run('COMMIT');
      } catch (err) {
        await conn.run('ROLLBACK').catch(() => {});
        throw err;
      }
    });
  }

  drop(): Promise<void> {
    return this.#open(async (conn) => {
      const r = await conn.runAndReadAll(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND table_type = 'BASE TABLE'`,
      );
      for (const [t] of r.getRows() as [string][]) await conn.run(`DROP TABLE ${id(t)}`);
    });
  }

  async close(): Promise<void> {}
}

/** DuckDB lets one process write a file at a time: a reader holding it is waited for, up to LOCK_WAIT_MS. */
const LOCK_WAIT_MS = 10_000;

async function openLocked(open: () => Promise<DuckDBInstance>): Promise<DuckDBInstance> {
  const until = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      return await open();
    } catch (err) {
      if (!(err instanceof Error) || !err.message.includes('Could not set lock') || Date.now() > until)
        throw err;
      await new Promise((resolve) => setTimeout(resolve, 100 + Math.random() * 200));
    }
  }
}

async function readState(conn: DuckDBConnection): Promise<DestinationState | null> {
  const r = await conn.runAndReadAll('SELECT generation, xid, seq::VARCHAR AS seq FROM _tributary_sync');
  const [row] = r.getRowObjectsJson() as { generation: string; xid: string; seq: string }[];
  return row ? { generation: row.generation, position: { xid: row.xid, seq: Number(row.seq) } } : null;
}

async function hasTable(conn: DuckDBConnection, table: string): Promise<boolean> {
  const r = await conn.runAndReadAll(
    `SELECT count(*)::INTEGER AS n FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ${lit(table)}`,
  );
  const [row] = r.getRowObjectsJson() as { n: number }[];
  return (row?.n ?? 0) > 0;
}

/** A table as the staging schema has it (no key index: DuckDB checks keys eagerly within a transaction). */
async function ensureTable(conn: DuckDBConnection, shape: TableShape): Promise<void> {
  const table = id(shape.table);
  const columns = shape.columns.map((c) => `${id(c.name)} ${duckType(c.type).type}`);
  await conn.run(`CREATE TABLE IF NOT EXISTS ${table} (${columns.join(', ')})`);
  const r = await conn.runAndReadAll(
    `SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ${lit(shape.table)}`,
  );
  const present = new Set((r.getRows() as [string][]).map(([c]) => c));
  for (const c of shape.columns) {
    if (!present.has(c.name))
      await conn.run(`ALTER TABLE ${table} ADD COLUMN ${id(c.name)} ${duckType(c.type).type}`);
  }
}
