import pg from 'pg';

/*
 * Reading a PostgreSQL table source (ARCHITECTURE §15) in another database, on that source's
 * own pool: the table's columns and size for the admin API's checks, and keyset batches on
 * (cursor, id). Every read is a READ ONLY transaction with a statement timeout. Hand-written
 * SQL: the table and column names are the operator's, validated as identifiers (the table)
 * or quoted (columns); values only ever travel as parameters.
 */

export interface SourceColumn {
  name: string;
  /** As `format_type` prints it (`timestamp with time zone`, `bigint`). */
  type: string;
  /** pg_type.typcategory: `D` date/time, `N` numeric, `S` string, … */
  category: string;
}

export interface SourceTableInfo {
  columns: SourceColumn[];
  /** The planner's estimate of its rows. */
  estimatedRows: number;
}

/** Why a table source cannot be read. */
export class SourceTableError extends Error {
  override readonly name = 'SourceTableError';
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

// Dates, times and binary values arrive as PostgreSQL prints them, so every value is JSON as
// it is (a JS Date would lose microseconds, a Buffer would not be JSON at all).
const AS_TEXT = new Set([1082, 1083, 1114, 1184, 1266, 1182, 1183, 1115, 1185, 1270, 17, 1001, 1186, 1187]);
const textTypes = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    AS_TEXT.has(oid)
      ? (v: string) => v
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

const READ_TIMEOUT_MS = 60_000;

/** Runs `fn` in a READ ONLY transaction on one of `pool`'s connections. */
async function readOnly<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  // The source database going away between two statements is an 'error' event on the client,
  // not a rejected query: unheard, it would end the process.
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN TRANSACTION READ ONLY');
    await client.query(`SET LOCAL statement_timeout = ${READ_TIMEOUT_MS}`);
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

/**
 * The table's columns and estimated size, after checking that it exists and can be read.
 * @throws SourceTableError naming `table` (missing, not readable).
 */
export function describeSourceTable(pool: pg.Pool, table: string): Promise<SourceTableInfo> {
  return readOnly(pool, async (client) => {
    const { rows: found } = await client.query<{ readable: boolean | null }>(
      `SELECT has_table_privilege(c.oid, 'SELECT') AS readable FROM pg_class c WHERE c.oid = to_regclass($1)`,
      [table],
    );
    if (found.length === 0) throw new SourceTableError('table', `table "${table}" does not exist`);
    if (!found[0]?.readable)
      throw new SourceTableError('table', `this connection may not SELECT from "${table}"`);
    const { rows: columns } = await client.query<SourceColumn>(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, t.typcategory AS category
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum`,
      [table],
    );
    // The planner's estimate works on a table never analysed too (pg_class.reltuples is -1 then).
    const { rows: plan } = await client.query<{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': number } }] }>(
      `EXPLAIN (FORMAT JSON) SELECT 1 FROM ${table}`,
    );
    const estimatedRows = plan[0]?.['QUERY PLAN'][0].Plan['Plan Rows'] ?? 0;
    return { columns, estimatedRows };
  });
}

/** Where a table source's next batch starts: after this (cursor, id), both as PostgreSQL prints them. */
export interface KeysetPosition {
  cursor: string;
  id: string;
}

export interface SourceBatch {
  rows: Record<string, unknown>[];
  /** Each row's (cursor, id) as text, in order. */
  keys: KeysetPosition[];
}

const CURSOR_KEY = '__tributary_cursor';
const ID_KEY = '__tributary_id';

/**
 * Up to `limit` rows after `after` in (cursor, id) order; rows whose cursor or id is NULL
 * are never read (they have no place in the order). The parameters are untyped, so
 * PostgreSQL reads them as the columns' own types.
 */
export function readSourceBatch(
  pool: pg.Pool,
  q: { table: string; cursorColumn: string; idColumn: string; after: KeysetPosition | null; limit: number },
): Promise<SourceBatch> {
  const cur = `t.${pg.escapeIdentifier(q.cursorColumn)}`;
  const id = `t.${pg.escapeIdentifier(q.idColumn)}`;
  const after = q.after ? `AND (${cur}, ${id}) > ($2, $3)` : '';
  const text = `SELECT t.*, ${cur}::text AS ${CURSOR_KEY}, ${id}::text AS ${ID_KEY} FROM ${q.table} t
     WHERE ${cur} IS NOT NULL AND ${id} IS NOT NULL ${after}
     ORDER BY ${cur}, ${id} LIMIT $1`;
  const values = q.after ? [q.limit, q.after.cursor, q.after.id] : [q.limit];
  return readOnly(pool, async (client) => {
    const res = await client.query<Record<string, unknown>>({ text, values, types: textTypes });
    const keys: KeysetPosition[] = [];
    for (const row of res.rows) {
      keys.push({ cursor: row[CURSOR_KEY] as string, id: row[ID_KEY] as string });
      delete row[CURSOR_KEY];
      delete row[ID_KEY];
    }
    return { rows: res.rows, keys };
  });
}
