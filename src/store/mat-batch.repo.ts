import type pg from 'pg';
import { APPEND_TABLES, ident, literal, pathLiteral } from './mat-ddl.ts';

/**
 * One batch of a materialisation (ARCHITECTURE §17), inside the caller's transaction: the
 * events are loaded into a temporary table (`mat_batch`, dropped at commit) from the feed or,
 * for a rebuild, from `events` itself (and the archived months asked for, mat-archived.repo.ts);
 * then every table is written from it with one statement each. Every statement is idempotent
 * (append tables skip rows they hold, trait tables merge by event time, daily counts are
 * recomputed from `events`, or for a rebuild from the whole batch), so events applied twice
 * (a rebuild's snapshot edge, a batch retried) leave the same tables.
 */

/** A typed column as the statements need it. */
export interface TypedColumn {
  column: string;
  path: readonly string[];
  kind: 'boolean' | 'bigint' | 'double' | 'text';
}

/** A feed position: the next row to apply is the first at or after it. */
export interface FeedPosition {
  xid: string;
  seq: number;
}

const BATCH_COLUMNS = `xid xid8, seq bigint, included boolean, id uuid, service text, occurred_at timestamptz,
  received_at timestamptz, user_id text, anonymous_id text, key_id text, type text, call text, event text,
  props jsonb, traits jsonb, context jsonb, name text, category text, group_id text, previous_id text, ver text`;

/**
 * The batch's columns derived from a row `e` with the columns of `events` (Segment calls keep
 * their call type in metadata.segmentType): a stored event, or an archived one read back.
 */
const DERIVED = `e.id, e.service, e.occurred_at, e.received_at, e.user_id, e.anonymous_id, e.key_id, e.type,
  coalesce(e.metadata->>'segmentType', 'track'),
  CASE WHEN coalesce(e.metadata->>'segmentType', 'track') = 'track' THEN e.type END,
  CASE WHEN e.metadata ? 'segmentType' THEN e.metadata->'properties' ELSE e.metadata END,
  e.metadata->'traits', e.metadata->'context', e.metadata->>'name', e.metadata->>'category',
  e.metadata->>'groupId', e.metadata->>'previousId', tributary_version(e.occurred_at, e.received_at, e.id)`;

const INCLUDED = `(e.id IS NOT NULL AND ($1::text[] IS NULL OR e.service = ANY($1::text[])))`;

/**
 * Loads up to `limit` feed rows at or after `from` whose transactions have all finished
 * (below the snapshot's xmin), joined to their events (rows since erased are kept as not
 * included, so the position still passes them). Returns the count and the position after the last.
 */
export async function loadFeedBatch(
  client: pg.PoolClient,
  services: readonly string[] | null,
  from: FeedPosition,
  limit: number,
): Promise<{ rows: number; next: FeedPosition | null; newest: Date | null }> {
  await client.query(`CREATE TEMP TABLE mat_batch (${BATCH_COLUMNS}) ON COMMIT DROP`);
  await client.query(
    `INSERT INTO mat_batch
     SELECT f.xid, f.seq, ${INCLUDED}, ${DERIVED}
       FROM (SELECT xid, seq, occurred_at, id, service FROM event_feed
              WHERE (xid, seq) >= ($2::xid8, $3::bigint) AND xid < pg_snapshot_xmin(pg_current_snapshot())
              ORDER BY xid, seq LIMIT $4) f
       LEFT JOIN events e ON e.occurred_at = f.occurred_at AND e.id = f.id AND e.service = f.service`,
    [services, from.xid, from.seq, limit],
  );
  const r = await client.query<{ rows: string; xid: string | null; seq: string | null; newest: Date | null }>(
    `SELECT count(*) AS rows, (max(ARRAY[xid::text::numeric, seq::numeric]))[1]::text AS xid,
            (max(ARRAY[xid::text::numeric, seq::numeric]))[2]::text AS seq, max(occurred_at) FILTER (WHERE included) AS newest
       FROM mat_batch`,
  );
  const row = r.rows[0];
  const rows = Number(row?.rows ?? 0);
  if (!row || rows === 0 || row.xid === null) return { rows: 0, next: null, newest: null };
  return { rows, next: { xid: row.xid, seq: Number(row.seq) + 1 }, newest: row.newest };
}

/**
 * For a rebuild: every event (of `services`) visible to the transaction's snapshot, and the
 * feed position to go on from: the snapshot's xmin (rows of transactions it could not see
 * are at or after it; the few it saw again there are applied twice, harmlessly).
 */
export async function loadAllEvents(
  client: pg.PoolClient,
  services: readonly string[] | null,
): Promise<{ rows: number; next: FeedPosition; newest: Date | null }> {
  await client.query(`CREATE TEMP TABLE mat_batch (${BATCH_COLUMNS}) ON COMMIT DROP`);
  const inserted = await addRebuildRows(
    client,
    'events e WHERE $1::text[] IS NULL OR e.service = ANY($1::text[])',
    [services],
  );
  const r = await client.query<{ xmin: string; newest: Date | null }>(
    `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, (SELECT max(occurred_at) FROM mat_batch) AS newest`,
  );
  return {
    rows: inserted,
    next: { xid: r.rows[0]?.xmin ?? '0', seq: 0 },
    newest: r.rows[0]?.newest ?? null,
  };
}

/**
 * Adds to a rebuild's `mat_batch` the rows of `source` (a FROM clause naming its rows `e`, with
 * their WHERE; `params` its parameters), derived as every batch row is. Returns the rows added.
 */
export async function addRebuildRows(
  client: pg.PoolClient,
  source: string,
  params: readonly unknown[],
): Promise<number> {
  const r = await client.query(`INSERT INTO mat_batch SELECT NULL, NULL, true, ${DERIVED} FROM ${source}`, [
    ...params,
  ]);
  return r.rowCount ?? 0;
}

/** Track event names in the batch, in order of first appearance (feed order, then time). */
export async function batchEventNames(client: pg.PoolClient): Promise<string[]> {
  const r = await client.query<{ event: string }>(
    `SELECT event FROM mat_batch WHERE included AND call = 'track'
      GROUP BY event ORDER BY min(ARRAY[coalesce(xid::text::numeric, 0), coalesce(seq, 0)]), min(ver), event`,
  );
  return r.rows.map((x) => x.event);
}

/** Where each table's promoted values come from in the batch: the JSON object and the rows. */
export const SOURCES: Record<string, { object: 'props' | 'traits'; where: string }> = {
  pages: { object: 'props', where: `call = 'page'` },
  screens: { object: 'props', where: `call = 'screen'` },
  identifies: { object: 'traits', where: `call = 'identify'` },
  groups: { object: 'traits', where: `call = 'group'` },
  users: { object: 'traits', where: `call = 'identify' AND user_id IS NOT NULL` },
  accounts: { object: 'traits', where: `call = 'group' AND group_id IS NOT NULL` },
};
const eventSource = (event: string) => ({
  object: 'props' as const,
  where: `call = 'track' AND event = ${literal(event)}`,
});

/** A (table, JSON path, kind) the batch holds: how many values, and one event id with it. */
export interface Observed {
  table: string;
  path: string[];
  /** A column kind, or `object` (a nested object: walked into, and never a cell). */
  kind: TypedColumn['kind'] | 'object';
  count: number;
  sample: string;
}

/**
 * Every (table, JSON path, kind) in the batch, counted, with a sample event id: nested
 * objects walked (to depth 8) and listed as `object`, arrays and scalars with their kind,
 * nulls not. The caller plans columns from it and counts, from the same rows, the values
 * that do not fit their column (conflicts). `eventTables` maps event name → its table.
 */
export async function observePaths(
  client: pg.PoolClient,
  eventTables: ReadonlyMap<string, string>,
): Promise<Observed[]> {
  const sources = [
    ...Object.entries(SOURCES).map(([table, s]) => ({ table, ...s })),
    ...[...eventTables].map(([event, table]) => ({ table, ...eventSource(event) })),
  ];
  const src = sources
    .map(
      (s) =>
        `SELECT ${literal(s.table)} AS tbl, id, ${s.object} AS obj FROM mat_batch WHERE included AND ${s.where}`,
    )
    .join(' UNION ALL ');
  const r = await client.query<{
    tbl: string;
    path: string[];
    kind: Observed['kind'];
    n: number;
    sample: string;
  }>(
    `WITH RECURSIVE src AS (${src}),
     walk(tbl, id, path, v) AS (
       SELECT s.tbl, s.id, ARRAY[j.k], j.v FROM src s, jsonb_each(s.obj) AS j(k, v) WHERE jsonb_typeof(s.obj) = 'object'
       UNION ALL
       SELECT w.tbl, w.id, w.path || j.k, j.v FROM walk w, jsonb_each(w.v) AS j(k, v)
        WHERE jsonb_typeof(w.v) = 'object' AND cardinality(w.path) < 8)
     SELECT tbl, path, kind, count(*)::int AS n, (array_agg(id))[1]::text AS sample
       FROM (SELECT tbl, id, path, tributary_kind(v) AS kind FROM walk) w
      WHERE kind IS NOT NULL GROUP BY 1, 2, 3`,
  );
  return r.rows.map((x) => ({ table: x.tbl, path: x.path, kind: x.kind, count: x.n, sample: x.sample }));
}

const cell = (object: string, c: TypedColumn) =>
  `tributary_cell_${c.kind}(${object} #> ${pathLiteral(c.path)})`;

const COMMON = 'id, service, occurred_at, received_at, user_id, anonymous_id, key_id';
const APPEND_COLUMNS: Record<
  (typeof APPEND_TABLES)[number],
  { names: string; where: string; object?: 'props' | 'traits' }
> = {
  tracks: { names: 'event, properties, context', where: `call = 'track'` },
  pages: { names: 'name, category, properties, context', where: `call = 'page'`, object: 'props' },
  screens: { names: 'name, category, properties, context', where: `call = 'screen'`, object: 'props' },
  identifies: { names: 'traits, context', where: `call = 'identify'`, object: 'traits' },
  groups: { names: 'group_id, traits, context', where: `call = 'group'`, object: 'traits' },
  aliases: { names: 'previous_id, context', where: `call = 'alias'` },
};
/** The batch's expression for each fixed column name. */
const EXPRESSION: Record<string, string> = { properties: 'props' };

async function appendRows(
  client: pg.PoolClient,
  target: string,
  names: string,
  where: string,
  object: 'props' | 'traits' | undefined,
  typed: readonly TypedColumn[],
): Promise<number> {
  const fixed = names.split(', ');
  const columns = [...COMMON.split(', '), ...fixed, ...typed.map((c) => ident(c.column))];
  const values = [
    ...COMMON.split(', '),
    ...fixed.map((n) => EXPRESSION[n] ?? n),
    ...(object ? typed.map((c) => cell(object, c)) : []),
  ];
  const r = await client.query(
    `INSERT INTO ${target} (${columns.join(', ')}) SELECT ${values.join(', ')} FROM mat_batch
      WHERE included AND ${where} ON CONFLICT DO NOTHING`,
  );
  return r.rowCount ?? 0;
}

/** Appends the batch to the six call tables and the event tables. Returns rows added per table. */
export async function applyAppends(
  client: pg.PoolClient,
  schema: string,
  typedOf: (table: string) => readonly TypedColumn[],
  eventTables: ReadonlyMap<string, string>,
): Promise<Record<string, number>> {
  const added: Record<string, number> = {};
  const s = ident(schema);
  for (const table of APPEND_TABLES) {
    const spec = APPEND_COLUMNS[table];
    const typed = spec.object ? typedOf(table) : [];
    added[table] = await appendRows(client, `${s}.${table}`, spec.names, spec.where, spec.object, typed);
  }
  for (const [event, table] of eventTables) {
    const where = eventSource(event).where;
    added[table] = await appendRows(
      client,
      `${s}.${ident(table)}`,
      'event, properties, context',
      where,
      'props',
      typedOf(table),
    );
  }
  return added;
}
