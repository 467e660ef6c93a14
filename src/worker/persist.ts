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

/**
 * Splits a batch into `lanes` contiguous parts inserted at the same time on separate
 * connections: PostgreSQL runs one statement per backend, so one batch at a time leaves
 * it waiting. Throws (after every part settled) when any part could not be written; the
 * caller then retries the whole batch, and rows already committed are skipped as stored.
 */
export async function insertConcurrently(
  pool: pg.Pool,
  events: readonly string[],
  lanes: number,
): Promise<IsolatedInsert> {
  const size = Math.ceil(events.length / Math.max(1, lanes));
  if (lanes <= 1 || events.length <= size) return insertIsolating(pool, events);
  const parts: Promise<IsolatedInsert>[] = [];
  for (let from = 0; from < events.length; from += size) {
    parts.push(insertIsolating(pool, events.slice(from, from + size), from));
  }
  const settled = await Promise.allSettled(parts);
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  const done = settled as PromiseFulfilledResult<IsolatedInsert>[];
  return {
    inserted: done.reduce((a, r) => a + r.value.inserted, 0),
    refused: done.flatMap((r) => r.value.refused),
  };
}
