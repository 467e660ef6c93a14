import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { FeedPosition } from './mat-batch.repo.ts';
import { ident, literal } from './mat-ddl.ts';

/**
 * The changes of a staging schema (ARCHITECTURE §17), for a materialisation whose destination
 * is another database, a DuckDB file or Parquet objects. Its tables are built here exactly as
 * in a schema of this database; statement triggers record the key of every row inserted,
 * updated or deleted (by a batch, a recount, an erasure, retention) in `_changes`, keyed like
 * the feed by (transaction id, sequence) and read, like it, below the snapshot's xmin, so no
 * change of a transaction still in flight is passed over. A sync copies the current rows of
 * the changed keys: it is a copy of state, so a sync applied twice leaves the same tables.
 * `_generation` names one build: a rebuild makes a new schema, so a new generation, and the
 * destination is then copied whole.
 */

/** A table of the staging schema as a destination makes it. */
export interface TableShape {
  table: string;
  /** In table order; `type` as PostgreSQL names it (`format_type`). */
  columns: { name: string; type: string }[];
  /** The primary key's columns. */
  key: string[];
}

const TRACK_FUNCTION = `RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'DELETE' THEN
    EXECUTE format('INSERT INTO %I._changes (tbl, key) SELECT %L, (SELECT jsonb_object_agg(k, r.j->k) FROM unnest(%L::text[]) k)
                      FROM (SELECT to_jsonb(o.*) AS j FROM old_rows o) r', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV);
  ELSE
    EXECUTE format('INSERT INTO %I._changes (tbl, key) SELECT %L, (SELECT jsonb_object_agg(k, r.j->k) FROM unnest(%L::text[]) k)
                      FROM (SELECT to_jsonb(n.*) AS j FROM new_rows n) r', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV);
  END IF;
  RETURN NULL;
END $fn$`;

/**
 * Makes the change log, the generation and the triggers of a staging schema, and puts the
 * triggers on every table that has none yet (a new event table). Idempotent; in the caller's
 * transaction, before rows are written to a new table.
 */
export async function trackChanges(client: pg.PoolClient, schema: string): Promise<void> {
  const s = ident(schema);
  await client.query(`CREATE TABLE IF NOT EXISTS ${s}._changes (xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    seq bigserial, tbl text NOT NULL, key jsonb NOT NULL, PRIMARY KEY (xid, seq))`);
  await client.query(`CREATE TABLE IF NOT EXISTS ${s}._generation (id text NOT NULL)`);
  await client.query(
    `INSERT INTO ${s}._generation SELECT gen_random_uuid()::text WHERE NOT EXISTS (SELECT 1 FROM ${s}._generation)`,
  );
  await client.query(`CREATE OR REPLACE FUNCTION ${s}._track() ${TRACK_FUNCTION}`);
  const untracked = await client.query<{ table: string; key: string[] }>(
    `SELECT c.relname AS table, array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum)) AS key
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey::int2[])
      WHERE n.nspname = $1 AND c.relkind = 'r' AND left(c.relname, 1) <> '_'
        AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = '_track_i')
      GROUP BY c.relname`,
    [schema],
  );
  for (const { table, key } of untracked.rows) {
    const t = `${s}.${ident(table)}`;
    const args = key.map(literal).join(', ');
    for (const [suffix, op, transition] of [
      ['i', 'INSERT', 'NEW TABLE AS new_rows'],
      ['u', 'UPDATE', 'NEW TABLE AS new_rows'],
      ['d', 'DELETE', 'OLD TABLE AS old_rows'],
    ] as const) {
      await client.query(
        `CREATE TRIGGER ${ident(`_track_${suffix}`)} AFTER ${op} ON ${t} REFERENCING ${transition}
           FOR EACH STATEMENT EXECUTE FUNCTION ${s}._track(${args})`,
      );
    }
  }
}

/** A sync's read: one snapshot for the changes and the rows, no statement timeout (a whole copy takes a while). */
export async function beginSyncRead(client: pg.ClientBase): Promise<void> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL statement_timeout = 0');
}

/** The tables with changed keys in `sync_changes`. */
export async function changedTables(client: pg.ClientBase): Promise<Set<string>> {
  const r = await client.query<{ tbl: string }>('SELECT DISTINCT tbl FROM sync_changes');
  return new Set(r.rows.map((x) => x.tbl));
}

/**
 * The partition of a row of `shape` (a Parquet destination keeps one object per partition),
 * as the JSON text of `[service, part]`: per UTC day for per-event tables, the whole service
 * for `daily_counts`, one of 16 buckets of the key (by the first hex digit of its MD5) for
 * `users`, `accounts` and `identity_links`. Every table's key holds what it needs, so a
 * deleted row's partition is known from its key.
 */
export function partitionOf(shape: TableShape): (alias: string) => string {
  const hasTime = shape.columns.some((c) => c.name === 'occurred_at');
  const bucketBy = shape.key.find((k) => k !== 'service');
  return (a) => {
    const part = hasTime
      ? `'day=' || to_char((${a}.occurred_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD')`
      : shape.table === 'daily_counts' || bucketBy === undefined
        ? `''`
        : `'bucket=' || left(md5(${a}.${ident(bucketBy)}), 1)`;
    return `jsonb_build_array(${a}.service, ${part})::text`;
  };
}

/** The staging schema's generation, or null when it is not built yet. */
export async function readGeneration(client: pg.ClientBase, schema: string): Promise<string | null> {
  const exists = await client.query(
    `SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = '_generation'`,
    [schema],
  );
  if (exists.rowCount === 0) return null;
  const r = await client.query<{ id: string }>(`SELECT id FROM ${ident(schema)}._generation LIMIT 1`);
  return r.rows[0]?.id ?? null;
}

/** Every table of the staging schema, with its columns (in order) and primary key. */
export async function tableShapes(client: pg.ClientBase, schema: string): Promise<TableShape[]> {
  const r = await client.query<{ table: string; columns: { name: string; type: string }[]; key: string[] }>(
    `SELECT c.relname AS table,
            (SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
               FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
            (SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))
               FROM pg_index i JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey::int2[])
              WHERE i.indrelid = c.oid AND i.indisprimary) AS key
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r' AND left(c.relname, 1) <> '_'
      ORDER BY c.relname`,
    [schema],
  );
  return r.rows.map((t) => ({ table: t.table, columns: t.columns, key: t.key ?? [] }));
}

/**
 * Gathers the changed keys at or after `from` whose transactions have all finished (below the
 * snapshot's xmin), at most `limit` changes, into `sync_changes (tbl, key)` (distinct; dropped
 * at commit). Returns how many changes were read and the position after the last.
 */
export async function collectChanges(
  client: pg.ClientBase,
  schema: string,
  from: FeedPosition,
  limit: number,
): Promise<{ changes: number; next: FeedPosition | null }> {
  const s = ident(schema);
  await client.query(
    `CREATE TEMP TABLE sync_window ON COMMIT DROP AS
     SELECT xid, seq, tbl, key FROM ${s}._changes
      WHERE (xid, seq) >= ($1::xid8, $2::bigint) AND xid < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY xid, seq LIMIT $3`,
    [from.xid, from.seq, limit],
  );
  await client.query(
    'CREATE TEMP TABLE sync_changes ON COMMIT DROP AS SELECT DISTINCT tbl, key FROM sync_window',
  );
  const r = await client.query<{ n: string; xid: string | null; seq: string | null }>(
    `SELECT count(*) AS n, (max(ARRAY[xid::text::numeric, seq::numeric]))[1]::text AS xid,
            (max(ARRAY[xid::text::numeric, seq::numeric]))[2]::text AS seq FROM sync_window`,
  );
  const row = r.rows[0];
  if (!row || row.xid === null) return { changes: 0, next: null };
  return { changes: Number(row.n), next: { xid: row.xid, seq: Number(row.seq) + 1 } };
}

/** Where a full copy goes on from: changes of transactions the snapshot could not see. */
export async function snapshotPosition(client: pg.ClientBase): Promise<FeedPosition> {
  const r = await client.query<{ xmin: string }>(
    'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin',
  );
  return { xid: r.rows[0]?.xmin ?? '0', seq: 0 };
}

/** Forgets the changes before `upTo` (the destination holds them). */
export async function pruneChanges(pool: pg.Pool, schema: string, upTo: FeedPosition): Promise<number> {
  const r = await pool.query(
    `DELETE FROM ${ident(schema)}._changes WHERE (xid, seq) < ($1::xid8, $2::bigint)`,
    [upTo.xid, upTo.seq],
  );
  return r.rowCount ?? 0;
}

/** Changes the destination does not hold yet (a sync forgets those it applied), for the API's view. */
export async function unsyncedChanges(pool: pg.Pool, schema: string): Promise<number> {
  const exists = await pool.query(
    `SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = '_changes'`,
    [schema],
  );
  if (exists.rowCount === 0) return 0;
  const r = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${ident(schema)}._changes`);
  return Number(r.rows[0]?.n ?? 0);
}

/** A column as written to CSV: timestamps as UTC RFC 3339 with microseconds, jsonb as its text. */
function csvColumn(c: { name: string; type: string }, alias: string): string {
  const col = `${alias}.${ident(c.name)}`;
  if (c.type === 'timestamp with time zone')
    return `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
  if (c.type === 'jsonb') return `${col}::text`;
  return col;
}

/**
 * Which rows of a table a copy takes: all, those of the changed keys (for a destination
 * written row by row), the changed keys themselves, or every row of the partitions the
 * changed keys fall in (for Parquet, where an object holds a partition).
 */
export type RowScope = 'all' | 'changed' | 'keys' | { partitions: readonly string[] };

/**
 * Streams rows of a staging table to a CSV file (every non-NULL value quoted, so an unquoted
 * empty field is NULL). `withPartition` adds each row's partition ({@link partitionOf}) last.
 */
export async function copyRowsToCsv(
  client: pg.ClientBase,
  schema: string,
  shape: TableShape,
  scope: RowScope,
  path: string,
  withPartition = false,
): Promise<void> {
  const t = `${ident(schema)}.${ident(shape.table)}`;
  const keyRecord = `(SELECT jsonb_populate_record(NULL::${t}, key) AS r FROM sync_changes WHERE tbl = ${literal(shape.table)})`;
  const keyCols = shape.key.map(ident);
  const keyColumns = shape.columns.filter((c) => shape.key.includes(c.name));
  let select: string;
  if (scope === 'keys') {
    const cols = shape.key.map((k) => {
      const c = keyColumns.find((x) => x.name === k) ?? { name: k, type: 'text' };
      return csvColumn(c, '(x.r)');
    });
    select = `SELECT DISTINCT ${cols.join(', ')} FROM ${keyRecord} x`;
  } else {
    const partition = partitionOf(shape);
    const cols = [
      ...shape.columns.map((c) => csvColumn(c, 't')),
      ...(withPartition ? [partition('t')] : []),
    ].join(', ');
    const keyTuple = `(${keyCols.map((k) => `t.${k}`).join(', ')})`;
    const changedTuple = `SELECT ${keyCols.map((k) => `(x.r).${k}`).join(', ')} FROM ${keyRecord} x`;
    const where =
      scope === 'all'
        ? 'true'
        : scope === 'changed'
          ? `${keyTuple} IN (${changedTuple})`
          : `${partition('t')} IN (${scope.partitions.map(literal).join(', ') || 'NULL'})`;
    select = `SELECT ${cols} FROM ${t} t WHERE ${where}`;
  }
  await pipeline(
    client.query(copyTo(`COPY (${select}) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE *)`)),
    createWriteStream(path),
  );
}

/** The partitions ({@link partitionOf}) a table's changed keys fall in. */
export async function changedPartitions(
  client: pg.ClientBase,
  schema: string,
  shape: TableShape,
): Promise<string[]> {
  const t = `${ident(schema)}.${ident(shape.table)}`;
  const r = await client.query<{ p: string }>(
    `SELECT DISTINCT ${partitionOf(shape)('(x.r)')} AS p
       FROM (SELECT jsonb_populate_record(NULL::${t}, key) AS r FROM sync_changes WHERE tbl = $1) x`,
    [shape.table],
  );
  return r.rows.map((x) => x.p);
}
