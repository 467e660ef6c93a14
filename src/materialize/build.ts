import type pg from 'pg';
import {
  applyAppends,
  batchEventNames,
  type Observed,
  observePaths,
  SOURCES,
  type TypedColumn,
} from '../store/mat-batch.repo.ts';
import { addConflicts, type CatalogEntry, saveColumns, saveEventTables } from '../store/mat-catalog.repo.ts';
import { trackChanges } from '../store/mat-changes.repo.ts';
import { addColumns, eventTableDdl } from '../store/mat-ddl.ts';
import {
  clearDirtyDays,
  countBatchDays,
  markDirtyDays,
  upsertIdentityLinks,
  upsertTraits,
} from '../store/mat-upsert.repo.ts';
import {
  type CatalogColumn,
  fits,
  type ObservedPath,
  planColumns,
  planEventTables,
  planRebuild,
  sqlType,
} from './columns.ts';
import { localSchema, type MaterializationSpec } from './spec.ts';

/**
 * Writes the batch loaded in `mat_batch` into a materialisation's tables (ARCHITECTURE §17),
 * in the caller's transaction: event tables assigned, typed columns planned (added as they
 * appear in a feed batch; for a rebuild, every column at once at its widest type), each
 * table written, values that did not fit counted. Returns rows written per table and the
 * conflicts found.
 */
export async function applyBatch(
  client: pg.PoolClient,
  name: string,
  spec: MaterializationSpec,
  schema: string,
  catalog: { columns: CatalogEntry[]; eventTables: Map<string, string> },
  mode: 'feed' | 'rebuild',
): Promise<{ rows: Record<string, number>; conflicts: number }> {
  const names = await batchEventNames(client);
  const present = new Set(names);
  // A rebuild keeps the names tables had, for the events still there.
  const known =
    mode === 'rebuild'
      ? new Map([...catalog.eventTables].filter(([event]) => present.has(event)))
      : catalog.eventTables;
  const added = planEventTables(known, names, spec.eventTables);
  // A rebuild fills an empty shadow schema: every table it keeps is made there.
  const made = mode === 'rebuild' ? [...known.values(), ...added.values()] : [...added.values()];
  for (const table of made) await client.query(eventTableDdl(schema, table));
  // A staging schema records every change for its destination: new tables are tracked before rows go in.
  if (mode === 'feed' && localSchema(spec) === null) await trackChanges(client, schema);
  await saveEventTables(client, name, mode === 'rebuild' ? new Map([...known, ...added]) : added);
  const eventTables = new Map([...known, ...added]);
  const inBatch = new Map([...eventTables].filter(([event]) => present.has(event)));

  const seenInBatch = await observePaths(client, inBatch);
  const observed = new Map<string, ObservedPath[]>();
  for (const o of seenInBatch) {
    if (o.kind === 'object') continue;
    const list = observed.get(o.table) ?? [];
    list.push({ path: o.path, kind: o.kind });
    observed.set(o.table, list);
  }
  const columns = new Map<string, CatalogColumn[]>();
  for (const c of catalog.columns) {
    const list = columns.get(c.table) ?? [];
    list.push({ path: [...c.path], column: c.column, kind: c.kind, wanted: c.wanted });
    columns.set(c.table, list);
  }
  const typed = new Map<string, CatalogColumn[]>();
  const widenedTables = new Set<string>();
  const tables = new Set([...Object.keys(SOURCES), ...inBatch.values()]);
  for (const table of tables) {
    const existing = columns.get(table) ?? [];
    const seen = observed.get(table) ?? [];
    let current: CatalogColumn[];
    let fresh: CatalogColumn[];
    if (mode === 'rebuild') {
      current = planRebuild(existing, seen, spec.promoteMaxColumns).map((c) => ({ ...c, kind: c.wanted }));
      fresh = current;
    } else {
      const plan = planColumns(existing, seen, spec.promoteMaxColumns);
      fresh = plan.added;
      const widened = new Map(plan.widened.map((c) => [c.column, c]));
      current = [...existing.map((c) => widened.get(c.column) ?? c), ...plan.added];
      await saveColumns(
        client,
        name,
        plan.widened.map((c) => ({ ...c, table })),
      );
    }
    if (fresh.length > 0) {
      await addColumns(
        client,
        schema,
        table,
        fresh.map((c) => ({ column: c.column, type: sqlType(c.kind) })),
      );
      await saveColumns(
        client,
        name,
        fresh.map((c) => ({ ...c, table })),
      );
      widenedTables.add(table);
    }
    typed.set(table, current);
  }
  const typedOf = (table: string): TypedColumn[] => typed.get(table) ?? [];

  const rows = await applyAppends(client, schema, typedOf, inBatch);
  rows.users = await upsertTraits(client, schema, 'users', typedOf('users'), widenedTables.has('users'));
  rows.accounts = await upsertTraits(
    client,
    schema,
    'accounts',
    typedOf('accounts'),
    widenedTables.has('accounts'),
  );
  rows.identity_links = await upsertIdentityLinks(client, schema);
  if (mode === 'rebuild') {
    // From the batch, which holds every event of the rebuild (archived months' too).
    rows.daily_counts = await countBatchDays(client, schema);
    await clearDirtyDays(client, name);
  } else {
    // Recounted later, together (recountDirtyDays): a day's recount reads all its events.
    await markDirtyDays(client, name);
  }

  const conflicts = conflictsOf(seenInBatch, typed);
  for (const [table, found] of conflicts.byTable) await addConflicts(client, name, table, found);
  return { rows, conflicts: conflicts.total };
}

/**
 * Values of the batch that do not fit their column (the typed cell is NULL, the value stays
 * in the jsonb): a kind wider than the column's, or an object where the column holds values.
 * Per table and column: how many, and one event id.
 */
function conflictsOf(
  seen: readonly Observed[],
  typed: ReadonlyMap<string, readonly CatalogColumn[]>,
): { total: number; byTable: Map<string, { column: string; count: number; sample: string | null }[]> } {
  const byTable = new Map<string, { column: string; count: number; sample: string | null }[]>();
  let total = 0;
  const columnOf = new Map<string, CatalogColumn>();
  for (const [table, columns] of typed) {
    for (const c of columns) columnOf.set(JSON.stringify([table, c.path]), c);
  }
  for (const o of seen) {
    const c = columnOf.get(JSON.stringify([o.table, o.path]));
    if (!c || (o.kind !== 'object' && fits(o.kind, c.kind))) continue;
    const list = byTable.get(o.table) ?? [];
    const held = list.find((x) => x.column === c.column);
    if (held) held.count += o.count;
    else list.push({ column: c.column, count: o.count, sample: o.sample });
    byTable.set(o.table, list);
    total += o.count;
  }
  return { total, byTable };
}
