import type pg from 'pg';
import { expect } from 'vitest';

/**
 * Oracles for the materialisation tests (ARCHITECTURE §17): what each table must hold,
 * computed from `events` independently of the runner (SQL over `events` for the append
 * tables and daily counts; JavaScript for the last-writer-wins traits and links), and digests
 * of what the tables do hold, to compare an incremental build with a rebuild. `source`, where
 * taken, stands for `events`: a table or a parenthesised query with its columns (a copy of the
 * events made before retention archived some of them, say).
 */

const q = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** Where each call type's rows come from in `events`. */
const CALL = `coalesce(metadata->>'segmentType', 'track')`;

/** Per fixed append table: rows and a digest of (id, the JSON kept) computed from `events`. */
export async function expectAppendTablesMatch(
  pool: pg.Pool,
  schema: string,
  source = 'events',
): Promise<Record<string, number>> {
  const tables: Record<string, { call: string; kept: string; matKept: string }> = {
    tracks: {
      call: 'track',
      kept: `coalesce(CASE WHEN metadata ? 'segmentType' THEN metadata->'properties' ELSE metadata END::text, '')`,
      matKept: `coalesce(properties::text, '')`,
    },
    pages: {
      call: 'page',
      kept: `coalesce((metadata->'properties')::text, '')`,
      matKept: `coalesce(properties::text, '')`,
    },
    screens: {
      call: 'screen',
      kept: `coalesce((metadata->'properties')::text, '')`,
      matKept: `coalesce(properties::text, '')`,
    },
    identifies: {
      call: 'identify',
      kept: `coalesce((metadata->'traits')::text, '')`,
      matKept: `coalesce(traits::text, '')`,
    },
    groups: {
      call: 'group',
      kept: `coalesce((metadata->'traits')::text, '') || coalesce(metadata->>'groupId', '')`,
      matKept: `coalesce(traits::text, '') || coalesce(group_id, '')`,
    },
    aliases: {
      call: 'alias',
      kept: `coalesce(metadata->>'previousId', '')`,
      matKept: `coalesce(previous_id, '')`,
    },
  };
  const counts: Record<string, number> = {};
  for (const [table, t] of Object.entries(tables)) {
    const want = await pool.query<{ n: number; d: string | null }>(
      `SELECT count(*)::int AS n, md5(string_agg(id::text || service || ${t.kept}, ',' ORDER BY id, service)) AS d
         FROM ${source} AS src WHERE ${CALL} = $1`,
      [t.call],
    );
    const got = await pool.query<{ n: number; d: string | null }>(
      `SELECT count(*)::int AS n, md5(string_agg(id::text || service || ${t.matKept}, ',' ORDER BY id, service)) AS d
         FROM ${q(schema)}.${table}`,
    );
    expect({ table, ...got.rows[0] }).toEqual({ table, ...want.rows[0] });
    counts[table] = want.rows[0]?.n ?? 0;
  }
  return counts;
}

/** Each event table holds exactly the tracks of its event name. */
export async function expectEventTablesMatch(
  pool: pg.Pool,
  schema: string,
  eventTables: Record<string, string>,
  source = 'events',
): Promise<void> {
  for (const [event, table] of Object.entries(eventTables)) {
    const want = await pool.query<{ n: number; d: string | null }>(
      `SELECT count(*)::int AS n, md5(string_agg(id::text, ',' ORDER BY id)) AS d FROM ${source} AS src
        WHERE ${CALL} = 'track' AND type = $1`,
      [event],
    );
    const got = await pool.query<{ n: number; d: string | null }>(
      `SELECT count(*)::int AS n, md5(string_agg(id::text, ',' ORDER BY id)) AS d FROM ${q(schema)}.${q(table)}`,
    );
    expect({ event, ...got.rows[0] }).toEqual({ event, ...want.rows[0] });
  }
}

interface Versioned {
  version: string;
  value: unknown;
}
const versionOf = (r: { occurred_at: string; received_at: string; id: string }) =>
  `${r.occurred_at}|${r.received_at}|${r.id}`;

/**
 * `users` (or `accounts`): every trait holds the value of the identify (group) call latest by
 * (occurred_at, received_at, id), computed here from the events in a shuffled order.
 */
export async function expectTraitsMatch(
  pool: pg.Pool,
  schema: string,
  table: 'users' | 'accounts',
  source = 'events',
): Promise<number> {
  const key = table === 'users' ? 'user_id' : `metadata->>'groupId'`;
  const call = table === 'users' ? 'identify' : 'group';
  const { rows } = await pool.query<{
    k: string;
    service: string;
    occurred_at: string;
    received_at: string;
    id: string;
    traits: Record<string, unknown> | null;
  }>(
    `SELECT ${key} AS k, service, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') AS occurred_at,
            to_char(received_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') AS received_at, id::text AS id,
            metadata->'traits' AS traits
       FROM ${source} AS src WHERE ${CALL} = $1 AND ${key} IS NOT NULL ORDER BY random()`,
    [call],
  );
  const want = new Map<string, Map<string, Versioned>>();
  for (const r of rows) {
    const k = `${r.service}/${r.k}`;
    const traits = want.get(k) ?? new Map<string, Versioned>();
    want.set(k, traits);
    for (const [name, value] of Object.entries(r.traits ?? {})) {
      const v = { version: versionOf(r), value };
      const held = traits.get(name);
      if (!held || held.version < v.version) traits.set(name, v);
    }
  }
  const keyColumn = table === 'users' ? 'user_id' : 'group_id';
  const got = await pool.query<{ k: string; traits: Record<string, unknown> }>(
    `SELECT service || '/' || ${keyColumn} AS k, traits FROM ${q(schema)}.${table}`,
  );
  const gotMap = new Map(got.rows.map((r) => [r.k, r.traits]));
  expect([...gotMap.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [k, traits] of want) {
    expect({ k, traits: gotMap.get(k) }).toEqual({
      k,
      traits: Object.fromEntries([...traits].map(([n, v]) => [n, v.value])),
    });
  }
  return want.size;
}

/** `daily_counts` equals a GROUP BY over `events`. */
export async function expectDailyCountsMatch(
  pool: pg.Pool,
  schema: string,
  source = 'events',
): Promise<number> {
  const want = await pool.query(
    `SELECT service, type, (occurred_at AT TIME ZONE 'UTC')::date::text AS day, count(*)::int AS events,
            count(DISTINCT coalesce(user_id, anonymous_id))::int AS users
       FROM ${source} AS src GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
  );
  const got = await pool.query(
    `SELECT service, type, day::text AS day, events::int, users::int FROM ${q(schema)}.daily_counts ORDER BY 1, 2, 3`,
  );
  expect(got.rows).toEqual(want.rows);
  return want.rowCount ?? 0;
}

export interface CatalogColumn {
  table: string;
  column: string;
  path: string[];
  type: string;
  conflicts: number;
}

/**
 * Nothing lost: every typed cell equals its JSON value (cast to the column's type), and every
 * NULL cell whose JSON holds a value is a counted conflict. Returns the conflicts seen.
 */
export async function expectTypedColumnsHold(
  pool: pg.Pool,
  schema: string,
  columns: readonly CatalogColumn[],
): Promise<number> {
  let conflicts = 0;
  const objectOf = (table: string) =>
    ['identifies', 'groups', 'users', 'accounts'].includes(table) ? 'traits' : 'properties';
  for (const c of columns) {
    const v = `${objectOf(c.table)} #> $1::text[]`;
    const { rows } = await pool.query<{ wrong: number; missing: number }>(
      `SELECT count(*) FILTER (WHERE ${q(c.column)} IS NOT NULL
                                 AND ${q(c.column)} IS DISTINCT FROM tributary_cell_${c.type}(${v}))::int AS wrong,
              count(*) FILTER (WHERE ${q(c.column)} IS NULL AND ${v} IS NOT NULL AND jsonb_typeof(${v}) <> 'null')::int AS missing
         FROM ${q(schema)}.${q(c.table)}`,
      [c.path],
    );
    expect({ column: `${c.table}.${c.column}`, wrong: rows[0]?.wrong }).toEqual({
      column: `${c.table}.${c.column}`,
      wrong: 0,
    });
    if (!['users', 'accounts'].includes(c.table)) {
      expect({ column: `${c.table}.${c.column}`, conflicts: c.conflicts }).toEqual({
        column: `${c.table}.${c.column}`,
        conflicts: rows[0]?.missing,
      });
    }
    conflicts += rows[0]?.missing ?? 0;
  }
  return conflicts;
}

/** A digest per table of every row (all columns, whatever their order), for comparing two builds. */
export async function tableDigests(pool: pg.Pool, schema: string): Promise<Record<string, string>> {
  const tables = await pool.query<{ name: string }>(
    `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`,
    [schema],
  );
  const out: Record<string, string> = {};
  for (const { name } of tables.rows) {
    const r = await pool.query<{ d: string | null; n: number }>(
      `SELECT md5(string_agg(to_jsonb(t)::text, '|' ORDER BY to_jsonb(t)::text)) AS d, count(*)::int AS n
         FROM ${q(schema)}.${q(name)} t`,
    );
    out[name] = `${r.rows[0]?.n}:${r.rows[0]?.d}`;
  }
  return out;
}
