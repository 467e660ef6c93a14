import type pg from 'pg';
import type { TypedColumn } from './mat-batch.repo.ts';

/**
 * The catalog of materialisations (ARCHITECTURE §17): every typed column with its JSON path,
 * type, widest type seen and conflicts (`mat_columns`), and the event tables (`mat_event_tables`).
 */

export interface CatalogEntry extends TypedColumn {
  table: string;
  wanted: TypedColumn['kind'];
  conflicts: number;
  conflictSample: string | null;
}

export async function readCatalog(
  client: pg.PoolClient | pg.Pool,
  name: string,
): Promise<{ columns: CatalogEntry[]; eventTables: Map<string, string> }> {
  const columns = await client.query<CatalogEntry>(
    `SELECT table_name AS "table", column_name AS "column", path, kind, wanted, conflicts::int8 AS conflicts,
            conflict_sample AS "conflictSample"
       FROM mat_columns WHERE materialization = $1 ORDER BY table_name, path`,
    [name],
  );
  const tables = await client.query<{ event: string; table: string }>(
    `SELECT event_name AS event, table_name AS "table" FROM mat_event_tables WHERE materialization = $1`,
    [name],
  );
  return {
    columns: columns.rows.map((c) => ({ ...c, conflicts: Number(c.conflicts) })),
    eventTables: new Map(tables.rows.map((t) => [t.event, t.table])),
  };
}

/** Adds or updates catalog columns (a new column, a wider `wanted`). */
export async function saveColumns(
  client: pg.PoolClient,
  name: string,
  columns: readonly Omit<CatalogEntry, 'conflicts' | 'conflictSample'>[],
): Promise<void> {
  if (columns.length === 0) return;
  await client.query(
    `INSERT INTO mat_columns (materialization, table_name, column_name, path, kind, wanted)
     SELECT $1, c->>'table', c->>'column', ARRAY(SELECT jsonb_array_elements_text(c->'path')), c->>'kind', c->>'wanted'
       FROM jsonb_array_elements($2::jsonb) AS c
     ON CONFLICT (materialization, table_name, column_name) DO UPDATE SET wanted = EXCLUDED.wanted`,
    [name, JSON.stringify(columns)],
  );
}

/** Counts values that did not fit, keeping the first sample id. */
export async function addConflicts(
  client: pg.PoolClient,
  name: string,
  table: string,
  counts: readonly { column: string; count: number; sample: string | null }[],
): Promise<void> {
  for (const c of counts) {
    await client.query(
      `UPDATE mat_columns SET conflicts = conflicts + $4, conflict_sample = coalesce(conflict_sample, $5::uuid)
        WHERE materialization = $1 AND table_name = $2 AND column_name = $3`,
      [name, table, c.column, c.count, c.sample],
    );
  }
}

export async function saveEventTables(
  client: pg.PoolClient,
  name: string,
  tables: ReadonlyMap<string, string>,
): Promise<void> {
  if (tables.size === 0) return;
  await client.query(
    `INSERT INTO mat_event_tables (materialization, event_name, table_name)
     SELECT $1, unnest($2::text[]), unnest($3::text[]) ON CONFLICT DO NOTHING`,
    [name, [...tables.keys()], [...tables.values()]],
  );
}

/** A rebuild's catalog replaces the old one (in the swap's transaction). */
export async function clearCatalog(client: pg.PoolClient, name: string): Promise<void> {
  await client.query('DELETE FROM mat_columns WHERE materialization = $1', [name]);
  await client.query('DELETE FROM mat_event_tables WHERE materialization = $1', [name]);
}
