import pg from 'pg';
import {
  describeSourceTable,
  type KeysetPosition,
  readSourceBatch,
  SourceTableError,
} from '../store/source-tables.repo.ts';
import { BatchSizer } from './batch-size.ts';
import { type ReadBatch, SourceError, type SourceProbe, type SourceReader } from './errors.ts';
import type { PostgresSourceConfig } from './settings.ts';

/**
 * A PostgreSQL table source (ARCHITECTURE §15): keyset-incremental on (cursorColumn,
 * idColumn), read in READ ONLY transactions on a pool of its own to the source database,
 * in batches sized by measurement. The position is the last (cursor, id) buffered.
 */

const CONNECT_TIMEOUT_MS = 10_000;

/** SQLSTATEs and socket errors that mean "cannot get in" rather than "cannot read". */
const UNAUTHORIZED = new Set(['28P01', '28000']);
const UNREACHABLE = new Set([
  '3D000',
  '57P03',
  '53300',
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'ECONNRESET',
  'EHOSTUNREACH',
]);

/** A driver error as a {@link SourceError} (its message names no secret: the runner scrubs them too). */
export function postgresError(err: unknown): SourceError {
  if (err instanceof SourceError) return err;
  if (err instanceof SourceTableError) return new SourceError('source_unreadable', err.field, err.message);
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  if (e.code && UNAUTHORIZED.has(e.code))
    return new SourceError('source_unauthorized', 'connection', message);
  if ((e.code && UNREACHABLE.has(e.code)) || /timeout|terminated|connect/i.test(message)) {
    return new SourceError('source_unreachable', 'connection', message);
  }
  return new SourceError('source_unreadable', 'table', message);
}

const isPosition = (p: Record<string, unknown> | null): p is Record<string, unknown> & KeysetPosition =>
  p !== null && typeof p.cursor === 'string' && typeof p.id === 'string';

export class PostgresSourceReader implements SourceReader {
  readonly #config: PostgresSourceConfig;
  readonly #pool: pg.Pool;
  readonly #sizer: BatchSizer;

  constructor(config: PostgresSourceConfig, connection: string) {
    this.#config = config;
    this.#pool = new pg.Pool({
      connectionString: connection,
      max: 1,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      idleTimeoutMillis: 30_000,
      application_name: 'tributary-source',
      // Dates print in one form whatever the source database's defaults, so a cursor read
      // back as text compares exactly.
      options: '-c TimeZone=UTC -c DateStyle=ISO',
    });
    this.#pool.on('error', () => {});
    this.#sizer = new BatchSizer({ max: config.maxBatchRows });
  }

  async next(position: Record<string, unknown> | null): Promise<ReadBatch> {
    const { table, cursorColumn, idColumn } = this.#config;
    const limit = this.#sizer.size;
    const after = isPosition(position) ? { cursor: position.cursor, id: position.id } : null;
    const batch = await readSourceBatch(this.#pool, { table, cursorColumn, idColumn, after, limit }).catch(
      (err: unknown) => {
        throw postgresError(err);
      },
    );
    const last = batch.keys[batch.keys.length - 1];
    return {
      records: batch.rows.map((record, i) => ({
        record,
        cursor: batch.keys[i]?.cursor as string,
        recordId: batch.keys[i]?.id as string,
      })),
      position: last ? { cursor: last.cursor, id: last.id } : position,
      more: batch.rows.length === limit,
    };
  }

  measured(records: number, elapsedMs: number): void {
    this.#sizer.measured(records, elapsedMs);
  }

  /** Connects, checks the table and every named column, and reads the first rows. */
  async probe(sampleSize: number): Promise<SourceProbe> {
    const c = this.#config;
    const info = await describeSourceTable(this.#pool, c.table).catch((err: unknown) => {
      throw postgresError(err);
    });
    const byName = new Map(info.columns.map((col) => [col.name, col]));
    const named: [string, string | undefined][] = [
      ['cursorColumn', c.cursorColumn],
      ['idColumn', c.idColumn],
      ['typeColumn', c.typeColumn],
      ['userIdColumn', c.userIdColumn],
      ['timestampColumn', c.timestampColumn],
    ];
    for (const [field, column] of named) {
      if (column !== undefined && !byName.has(column)) {
        throw new SourceError('source_unreadable', field, `table "${c.table}" has no column "${column}"`);
      }
    }
    const timestampField = c.timestampColumn === undefined ? 'cursorColumn' : 'timestampColumn';
    const timestamp = byName.get(c.timestampColumn ?? c.cursorColumn);
    if (timestamp && timestamp.category !== 'D') {
      throw new SourceError(
        'source_unreadable',
        timestampField,
        c.timestampColumn === undefined
          ? `the cursor column "${c.cursorColumn}" is ${timestamp.type}, not a date or timestamp: name the event time with timestampColumn`
          : `the column "${timestamp.name}" is ${timestamp.type}, not a date or timestamp`,
      );
    }
    const sample = await readSourceBatch(this.#pool, {
      table: c.table,
      cursorColumn: c.cursorColumn,
      idColumn: c.idColumn,
      after: null,
      limit: sampleSize,
    }).catch((err: unknown) => {
      throw postgresError(err);
    });
    return {
      fields: info.columns.map(({ name, type }) => ({ name, type })),
      estimatedRecords: Math.round(info.estimatedRows),
      sample: {
        records: sample.rows.map((record, i) => ({
          record,
          cursor: sample.keys[i]?.cursor as string,
          recordId: sample.keys[i]?.id as string,
        })),
        position: null,
        more: false,
      },
    };
  }

  close(): Promise<void> {
    return this.#pool.end();
  }
}
