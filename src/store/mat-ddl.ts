import type pg from 'pg';

/**
 * The tables of a materialisation (ARCHITECTURE §17) in its PostgreSQL schema: their fixed
 * columns, made once per build, and the typed columns added as properties appear. Names are
 * identifiers made by materialize/columns.ts ([a-z0-9_], ≤ 63 bytes) or a validated schema
 * name, quoted all the same.
 */

/** A quoted identifier. */
export const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`;
/** A quoted string literal (standard_conforming_strings is on since PostgreSQL 9.1). */
export const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`;
/** A text[] literal for a JSON path, for `#>`. */
export const pathLiteral = (path: readonly string[]): string =>
  `ARRAY[${path.map(literal).join(', ')}]::text[]`;

/**
 * The schema each `materializations` row builds in (materialize/spec.ts `buildSchema`): its
 * own schema in this database, else its staging schema.
 */
export const BUILD_SCHEMA_SQL = `CASE WHEN spec->'destination'->>'kind' = 'postgres' AND NOT (spec->'destination' ? 'connection')
  THEN spec->'destination'->>'schema' ELSE 'tributary_stage_' || left(md5(name), 10) END`;

/** Tables holding one row per event, keyed like `events`. */
export const APPEND_TABLES = ['tracks', 'pages', 'screens', 'identifies', 'groups', 'aliases'] as const;
export type AppendTable = (typeof APPEND_TABLES)[number];

/** The columns every per-event table starts with, in this order. */
const EVENT_COLUMNS = `id uuid NOT NULL, service text NOT NULL, occurred_at timestamptz NOT NULL,
  received_at timestamptz NOT NULL, user_id text, anonymous_id text, key_id text`;
const EVENT_KEY = 'PRIMARY KEY (occurred_at, id, service)';

/** What each fixed per-event table adds to the common columns. */
const APPEND_EXTRA: Record<AppendTable, string> = {
  tracks: 'event text NOT NULL, properties jsonb, context jsonb',
  pages: 'name text, category text, properties jsonb, context jsonb',
  screens: 'name text, category text, properties jsonb, context jsonb',
  identifies: 'traits jsonb, context jsonb',
  groups: 'group_id text, traits jsonb, context jsonb',
  aliases: 'previous_id text, context jsonb',
};

/** A per-event-name table (`order_completed`): like `tracks`, plus its promoted properties. */
export function eventTableDdl(schema: string, table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${ident(schema)}.${ident(table)} (${EVENT_COLUMNS},
    event text NOT NULL, properties jsonb, context jsonb, ${EVENT_KEY})`;
}

/** The trait tables (upsert, last writer wins per trait by event time). */
function traitTableDdl(schema: string, table: 'users' | 'accounts', key: 'user_id' | 'group_id'): string {
  return `CREATE TABLE IF NOT EXISTS ${ident(schema)}.${table} (service text NOT NULL, ${key} text NOT NULL,
    state jsonb NOT NULL DEFAULT '{}', traits jsonb GENERATED ALWAYS AS (tributary_lww_values(state)) STORED,
    first_seen_at timestamptz NOT NULL, last_seen_at timestamptz NOT NULL, PRIMARY KEY (service, ${key}))`;
}

/** Creates the schema and every fixed table (idempotent). */
export async function createFixedTables(client: pg.PoolClient, schema: string): Promise<void> {
  const s = ident(schema);
  const statements = [
    `CREATE SCHEMA IF NOT EXISTS ${s}`,
    ...APPEND_TABLES.map(
      (t) => `CREATE TABLE IF NOT EXISTS ${s}.${t} (${EVENT_COLUMNS}, ${APPEND_EXTRA[t]}, ${EVENT_KEY})`,
    ),
    traitTableDdl(schema, 'users', 'user_id'),
    traitTableDdl(schema, 'accounts', 'group_id'),
    `CREATE TABLE IF NOT EXISTS ${s}.identity_links (service text NOT NULL, anonymous_id text NOT NULL,
       user_id text NOT NULL, version text NOT NULL, PRIMARY KEY (service, anonymous_id))`,
    `CREATE TABLE IF NOT EXISTS ${s}.daily_counts (service text NOT NULL, type text NOT NULL, day date NOT NULL,
       events bigint NOT NULL, users bigint NOT NULL, PRIMARY KEY (service, type, day))`,
  ];
  for (const statement of statements) await client.query(statement);
}

/** Adds typed columns (nullable: instant, no rewrite). */
export async function addColumns(
  client: pg.PoolClient,
  schema: string,
  table: string,
  columns: readonly { column: string; type: string }[],
): Promise<void> {
  if (columns.length === 0) return;
  const adds = columns.map((c) => `ADD COLUMN IF NOT EXISTS ${ident(c.column)} ${c.type}`).join(', ');
  await client.query(`ALTER TABLE ${ident(schema)}.${ident(table)} ${adds}`);
}

/** Drops a schema and everything in it (a materialisation deleted, a shadow replaced). */
export async function dropSchema(client: pg.PoolClient | pg.Pool, schema: string): Promise<void> {
  await client.query(`DROP SCHEMA IF EXISTS ${ident(schema)} CASCADE`);
}

/** Puts a rebuilt schema in place of the live one (inside the caller's transaction). */
export async function swapSchema(client: pg.PoolClient, live: string, shadow: string): Promise<void> {
  await dropSchema(client, live);
  await client.query(`ALTER SCHEMA ${ident(shadow)} RENAME TO ${ident(live)}`);
}

/**
 * Rows per table of a schema, from PostgreSQL's statistics (live rows as of the last
 * transactions reported): approximate, and never waits on a batch under way, whose DDL
 * (a column added) locks its table until it commits.
 */
export async function countRows(
  client: pg.Pool | pg.PoolClient,
  schema: string,
): Promise<Record<string, number>> {
  const r = await client.query<{ name: string; n: string }>(
    `SELECT relname AS name, n_live_tup::text AS n FROM pg_stat_user_tables
      WHERE schemaname = $1 AND left(relname, 1) <> '_' ORDER BY 1`,
    [schema],
  );
  return Object.fromEntries(r.rows.map((t) => [t.name, Number(t.n)]));
}
