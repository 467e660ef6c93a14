import type { FeedPosition } from '../store/mat-batch.repo.ts';
import type { TableShape } from '../store/mat-changes.repo.ts';

/**
 * A destination other than a schema of the service's own database (ARCHITECTURE §17): another
 * PostgreSQL database, a DuckDB file, Parquet objects. It is written from the staging schema
 * by materialize/sync.ts and keeps, in the same atomic step as the rows, the generation and
 * change position it holds, so a sync cut off anywhere is either all there or not at all.
 */

/** What a destination holds: the staging schema's build and the change position reached. */
export interface DestinationState {
  generation: string;
  position: FeedPosition;
}

/** One table's part of a sync: CSV files as store/mat-changes.repo.ts writes them. */
export interface SyncTable {
  shape: TableShape;
  /** The current rows (of the changed keys; all when the sync is full; with their partition last for Parquet). */
  rowsCsv: string;
  /** Row-wise destinations: every changed key (rows with them are replaced). */
  keysCsv?: string;
  /** Parquet: the partitions whose objects are written again (`[service, part]` JSON texts). */
  partitions?: string[];
}

export interface Sync {
  generation: string;
  /** The change position after this sync. */
  position: FeedPosition;
  /** A whole copy: what the destination held before is replaced. */
  full: boolean;
  /**
   * What the destination held when the sync began: it applies nothing if it holds anything
   * else by then (another process's sync got there first, say one whose lease ran out).
   */
  expected: DestinationState | null;
  /** Every table of the staging schema (new tables and columns are made from these). */
  shapes: TableShape[];
  /** The tables with rows to write. */
  tables: SyncTable[];
}

export interface Destination {
  /** `rows`: given changed keys and their rows. `partitions`: given every row of each touched partition. */
  readonly granularity: 'rows' | 'partitions';
  /** Where it is, for logs and the API. */
  readonly location: string;
  state(): Promise<DestinationState | null>;
  /** Writes a sync atomically: rows, tables, columns and the state together. */
  apply(sync: Sync): Promise<void>;
  /** Removes what this materialisation wrote (it is deleted). */
  drop(): Promise<void>;
  close(): Promise<void>;
}

/** Thrown by a destination that moved on since a sync began: that sync is dropped. */
export class DestinationMovedError extends Error {
  override readonly name = 'DestinationMovedError';
}

/** Whether the destination still holds what the sync began from. */
export function stillAt(held: DestinationState | null, expected: DestinationState | null): boolean {
  return JSON.stringify(held) === JSON.stringify(expected);
}

/** A PostgreSQL type (`format_type`) as DuckDB names it, and as its CSV is read. */
export function duckType(pgType: string): { type: string; csv: string } {
  switch (pgType) {
    case 'uuid':
      return { type: 'UUID', csv: 'VARCHAR' };
    case 'timestamp with time zone':
      return { type: 'TIMESTAMPTZ', csv: 'TIMESTAMPTZ' };
    case 'jsonb':
      return { type: 'JSON', csv: 'VARCHAR' };
    case 'bigint':
      return { type: 'BIGINT', csv: 'BIGINT' };
    case 'double precision':
      return { type: 'DOUBLE', csv: 'DOUBLE' };
    case 'boolean':
      return { type: 'BOOLEAN', csv: 'VARCHAR' };
    case 'date':
      return { type: 'DATE', csv: 'DATE' };
    default:
      return { type: 'VARCHAR', csv: 'VARCHAR' };
  }
}
