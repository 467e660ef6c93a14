import type pg from 'pg';
import { classifyDbError } from '../store/errors.ts';
import { insertEventsJson } from '../store/events.repo.ts';

export interface IsolatedInsert {
  /** Rows newly written (rows already stored are skipped, not counted). */
  inserted: number;
  /** Events PostgreSQL refused as data, by index into the input, with its error. */
  refused: { index: number; error: string }[];
}

/**
 * Inserts event JSON texts in one statement; when PostgreSQL refuses the data, halves
 * the batch until the refused rows are isolated, so they can go to the dead letters
 * and the rest is stored. Any other error (database unavailable) is thrown.
 */
export async function insertIsolating(
  pool: pg.Pool,
  events: readonly string[],
  offset = 0,
): Promise<IsolatedInsert> {
  if (events.length === 0) return { inserted: 0, refused: [] };
  try {
    return { inserted: await insertEventsJson(pool, `[${events.join(',')}]`), refused: [] };
  } catch (err) {
    if (classifyDbError(err) !== 'data') throw err;
    if (events.length === 1) {
      const code = (err as { code?: string }).code ?? '';
      return { inserted: 0, refused: [{ index: offset, error: `${code} ${(err as Error).message}`.trim() }] };
    }
    const mid = events.length >> 1;
    const left = await insertIsolating(pool, events.slice(0, mid), offset);
    const right = await insertIsolating(pool, events.slice(mid), offset + mid);
    return { inserted: left.inserted + right.inserted, refused: [...left.refused, ...right.refused] };
  }
}
