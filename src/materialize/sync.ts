import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { connectForCopy } from '../store/db.ts';
import type { FeedPosition } from '../store/mat-batch.repo.ts';
import {
  beginSyncRead,
  changedPartitions,
  changedTables,
  collectChanges,
  copyRowsToCsv,
  pruneChanges,
  readGeneration,
  snapshotPosition,
  tableShapes,
} from '../store/mat-changes.repo.ts';
import { lockForSync } from '../store/materializations.repo.ts';
import type { Destination, SyncTable } from './destination.ts';

/**
 * Brings a destination up to date with its staging schema (ARCHITECTURE §17): the changes
 * recorded since the position the destination holds are read in one snapshot with the
 * current rows of their keys (or, for Parquet, of the partitions they fall in), written to
 * CSV files, and applied by the destination in one atomic step that also moves its position.
 * A destination of another generation (never written, or the staging schema rebuilt since)
 * is copied whole. Changes the destination holds are then forgotten here.
 */

export interface SyncOptions {
  pool: pg.Pool;
  /** The materialisation. */
  name: string;
  /** For the read, on a connection of its own without timeouts. */
  databaseUrl: string;
  schema: string;
  destination: Destination;
  workDir: string;
  /** Changes read per sync at most. */
  limit: number;
}

export interface SyncResult {
  /** Changes applied (0 when the destination was up to date). */
  changes: number;
  full: boolean;
  /** More changes are waiting (the limit was reached). */
  more: boolean;
  /** The change position the destination holds now. */
  position?: FeedPosition;
  /** Tables written. */
  tables?: number;
}

export async function syncOnce(o: SyncOptions): Promise<SyncResult> {
  await mkdir(o.workDir, { recursive: true });
  const dir = await mkdtemp(join(o.workDir, 'sync-'));
  const client = await connectForCopy(o.databaseUrl, 'tributary-materialize-sync');
  try {
    await beginSyncRead(client);
    const generation = (await lockForSync(client, o.name)) ? await readGeneration(client, o.schema) : null;
    if (generation === null) {
      await client.query('ROLLBACK');
      return { changes: 0, full: false, more: false };
    }
    const state = await o.destination.state();
    const full = state === null || state.generation !== generation;
    const shapes = await tableShapes(client, o.schema);
    let position = state?.position ?? { xid: '0', seq: 0 };
    let changes = 0;
    let touched: Set<string> | null = null;
    if (full) {
      position = await snapshotPosition(client);
    } else {
      const read = await collectChanges(client, o.schema, position, o.limit);
      if (read.next === null) {
        await client.query('ROLLBACK');
        return { changes: 0, full: false, more: false };
      }
      position = read.next;
      changes = read.changes;
      touched = await changedTables(client);
    }
    const tables: SyncTable[] = [];
    const partitioned = o.destination.granularity === 'partitions';
    for (const [i, shape] of shapes.entries()) {
      if (touched !== null && !touched.has(shape.table)) continue;
      const rowsCsv = join(dir, `${i}.rows.csv`);
      if (full) {
        await copyRowsToCsv(client, o.schema, shape, 'all', rowsCsv, partitioned);
        tables.push({ shape, rowsCsv });
      } else if (partitioned) {
        const partitions = await changedPartitions(client, o.schema, shape);
        await copyRowsToCsv(client, o.schema, shape, { partitions }, rowsCsv, true);
        tables.push({ shape, rowsCsv, partitions });
      } else {
        const keysCsv = join(dir, `${i}.keys.csv`);
        await copyRowsToCsv(client, o.schema, shape, 'changed', rowsCsv);
        await copyRowsToCsv(client, o.schema, shape, 'keys', keysCsv);
        tables.push({ shape, rowsCsv, keysCsv });
      }
    }
    await client.query('COMMIT');
    await o.destination.apply({ generation, position, full, shapes, tables, expected: state });
    await pruneChanges(o.pool, o.schema, position);
    return { changes, full, more: !full && changes >= o.limit, position, tables: tables.length };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    await client.end().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}
