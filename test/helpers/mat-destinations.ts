import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type pg from 'pg';
import type { ObjectStore } from '../../src/archive/object-store.ts';

/**
 * Materialised tables read back from every kind of destination (ARCHITECTURE §17) into one
 * comparable form: per table, the row count and a digest of its rows, each row with its
 * values normalised (timestamps as epoch microseconds, JSON parsed with its keys sorted,
 * numbers as numbers, the rest as text), so a PostgreSQL schema, a DuckDB file and Parquet
 * objects holding the same rows give the same digests.
 */

export type TableSets = Record<string, { rows: number; digest: string }>;
type Kind = 'time' | 'json' | 'number' | 'bool' | 'text';

const q = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** Stable JSON: object keys sorted. */
function stable(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stable).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stable(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function normalise(row: Record<string, unknown>, kinds: Record<string, Kind>): string {
  const out: Record<string, unknown> = {};
  for (const [column, value] of Object.entries(row)) {
    if (value === null || value === undefined) {
      out[column] = null;
      continue;
    }
    const kind = kinds[column];
    out[column] =
      kind === 'json'
        ? JSON.parse(String(value))
        : kind === 'number'
          ? Number(value)
          : kind === 'bool'
            ? Boolean(value)
            : String(value);
  }
  return stable(out);
}

/** The rows behind the digests of the last read, by table, for a failure message to show. */
export const lastRows = new Map<string, string[]>();

function digestOf(rows: string[], table?: string): { rows: number; digest: string } {
  rows.sort();
  if (table !== undefined) lastRows.set(table, rows);
  const h = createHash('sha256');
  for (const r of rows) h.update(r).update('\n');
  return { rows: rows.length, digest: h.digest('hex').slice(0, 16) };
}

const pgKind = (type: string): Kind =>
  type === 'timestamp with time zone'
    ? 'time'
    : type === 'jsonb'
      ? 'json'
      : type === 'double precision' || type === 'bigint'
        ? 'number'
        : type === 'boolean'
          ? 'bool'
          : 'text';

/** The tables of a PostgreSQL schema (those named `_…` are the service's own bookkeeping). */
export async function postgresSets(pool: pg.Pool, schema: string): Promise<TableSets> {
  const cols = await pool.query<{ t: string; c: string; type: string }>(
    `SELECT table_name AS t, column_name AS c, data_type AS type FROM information_schema.columns
      WHERE table_schema = $1 AND left(table_name, 1) <> '_' ORDER BY table_name, ordinal_position`,
    [schema],
  );
  const byTable = new Map<string, { c: string; type: string }[]>();
  for (const r of cols.rows) byTable.set(r.t, [...(byTable.get(r.t) ?? []), r]);
  const out: TableSets = {};
  for (const [table, columns] of byTable) {
    const kinds = Object.fromEntries(columns.map((c) => [c.c, pgKind(c.type)]));
    const select = columns
      .map((c) =>
        kinds[c.c] === 'time'
          ? `(extract(epoch FROM ${q(c.c)}) * 1000000)::bigint::text AS ${q(c.c)}`
          : kinds[c.c] === 'bool'
            ? q(c.c)
            : `${q(c.c)}::text AS ${q(c.c)}`,
      )
      .join(', ');
    const r = await pool.query(`SELECT ${select} FROM ${q(schema)}.${q(table)}`);
    out[table] = digestOf(r.rows.map((row) => normalise(row, kinds)));
  }
  return out;
}

const duckKind = (type: string): Kind =>
  type.startsWith('TIMESTAMP')
    ? 'time'
    : type === 'JSON'
      ? 'json'
      : type === 'DOUBLE' || type === 'BIGINT'
        ? 'number'
        : type === 'BOOLEAN'
          ? 'bool'
          : 'text';

/** Every table (or view) of a DuckDB database but the service's `_…` ones. */
async function duckSets(conn: Awaited<ReturnType<DuckDBInstance['connect']>>): Promise<TableSets> {
  const cols = await conn.runAndReadAll(
    `SELECT table_name, column_name, data_type FROM information_schema.columns
      WHERE table_schema = 'main' AND NOT starts_with(table_name, '_') ORDER BY table_name, ordinal_position`,
  );
  const byTable = new Map<string, { c: string; type: string }[]>();
  for (const [t, c, type] of cols.getRows() as [string, string, string][])
    byTable.set(t, [...(byTable.get(t) ?? []), { c, type }]);
  const out: TableSets = {};
  for (const [table, columns] of byTable) {
    const kinds = Object.fromEntries(columns.map((c) => [c.c, duckKind(c.type)]));
    const select = columns
      .map((c) =>
        kinds[c.c] === 'time'
          ? `epoch_us(${q(c.c)})::VARCHAR AS ${q(c.c)}`
          : kinds[c.c] === 'bool'
            ? q(c.c)
            : `${q(c.c)}::VARCHAR AS ${q(c.c)}`,
      )
      .join(', ');
    const r = await conn.runAndReadAll(`SELECT ${select} FROM ${q(table)}`);
    out[table] = digestOf(
      (r.getRowObjectsJson() as Record<string, unknown>[]).map((row) => normalise(row, kinds)),
      table,
    );
  }
  return out;
}

/** The tables of a DuckDB file (opened read-only, so a sync under way is not disturbed). */
export async function duckdbSets(path: string): Promise<TableSets> {
  let db: DuckDBInstance | undefined;
  // The file is locked while a sync writes it: wait for it.
  for (let tries = 0; db === undefined; tries++) {
    try {
      db = await DuckDBInstance.create(path, { access_mode: 'READ_ONLY' });
    } catch (err) {
      if (tries > 50 || !String(err).includes('lock')) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  const conn = await db.connect();
  try {
    return await duckSets(conn);
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

export interface LakeManifest {
  generation: string;
  position: { xid: string; seq: number };
  tables: Record<
    string,
    { columns: { name: string; type: string }[]; objects: { key: string; rows: number }[] }
  >;
}

/** The tables of a Parquet destination, as its manifest lists them (each object read with DuckDB). */
export async function parquetSets(
  store: ObjectStore,
  prefix: string,
): Promise<{ sets: TableSets; manifest: LakeManifest }> {
  const manifest = JSON.parse(
    Buffer.from(await store.getBytes(`${prefix}_manifest.json`)).toString('utf8'),
  ) as LakeManifest;
  const dir = await mkdtemp(join(tmpdir(), 'tributary-lake-'));
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    await conn.run("SET TimeZone = 'UTC'");
    for (const [table, t] of Object.entries(manifest.tables)) {
      const files: string[] = [];
      for (const [i, o] of t.objects.entries()) {
        const file = join(dir, `${table}-${i}.parquet`);
        await store.getFile(o.key, file);
        files.push(file);
      }
      const columns = t.columns.map((c) => `${q(c.name)} ${c.type}`).join(', ');
      await conn.run(`CREATE TABLE ${q(table)} (${columns})`);
      if (files.length > 0)
        await conn.run(
          `INSERT INTO ${q(table)} BY NAME SELECT * FROM read_parquet([${files.map((f) => `'${f}'`).join(', ')}], union_by_name = true)`,
        );
    }
    return { sets: await duckSets(conn), manifest };
  } finally {
    conn.closeSync();
    db.closeSync();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The objects under `prefix` with a row whose text mentions any of `needles` (each object read with DuckDB). */
export async function parquetObjectsMentioning(
  store: ObjectStore,
  prefix: string,
  needles: readonly string[],
): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'tributary-lake-'));
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  const found: string[] = [];
  try {
    const keys = (await store.list(prefix)).filter((k) => k.endsWith('.parquet'));
    for (const [i, key] of keys.entries()) {
      const file = join(dir, `${i}.parquet`);
      await store.getFile(key, file);
      const any = needles.map((n) => `contains(j, '${n.replaceAll("'", "''")}')`).join(' OR ');
      const r = await conn.runAndReadAll(
        `SELECT count(*)::INTEGER AS n FROM (SELECT to_json(t)::VARCHAR AS j FROM read_parquet('${file}') t) WHERE ${any}`,
      );
      const [row] = r.getRowObjectsJson() as { n: number }[];
      if ((row?.n ?? 0) > 0) found.push(key);
    }
    return found;
  } finally {
    conn.closeSync();
    db.closeSync();
    await rm(dir, { recursive: true, force: true });
  }
}
