import type pg from 'pg';
import { expect } from 'vitest';
import type { RedisLike } from '../../src/buffer/redis-client.ts';
import { sleep, waitFor } from './wait.ts';

/** Ids a test expects in the table: a Set, or the keys of `IngestLoad.acknowledged`. */
export interface ExpectedIds {
  readonly size: number;
  has(id: string): boolean;
  keys(): Iterable<string>;
}

/**
 * Rows in the events table: total and distinct events. An event is an id within a service
 * (ARCHITECTURE §11: two services may use one id), so distinct counts (id, service).
 */
export async function countRows(pool: pg.Pool): Promise<{ rows: number; distinct: number }> {
  const r = await pool.query<{ rows: number; distinct: number }>(
    'SELECT count(*)::int AS rows, count(DISTINCT (id, service))::int AS "distinct" FROM events',
  );
  return r.rows[0] ?? { rows: 0, distinct: 0 };
}

/** Waits until every one of `ids` is a row in the events table (in some service). */
export async function waitUntilStored(
  pool: pg.Pool,
  ids: string[],
  timeoutMs = 30_000,
  what = 'events stored',
): Promise<void> {
  await waitFor(
    async () => {
      const { rows } = await pool.query<{ n: number }>(
        'SELECT count(DISTINCT id)::int AS n FROM events WHERE id = ANY($1::uuid[])',
        [ids],
      );
      return rows[0]?.n === ids.length;
    },
    timeoutMs,
    what,
  );
}

/**
 * Waits until the table holds exactly the expected ids, once each, and asserts it:
 * nothing lost, nothing doubled, nothing that was not acknowledged.
 */
export async function expectStoredExactlyOnce(pool: pg.Pool, expected: ExpectedIds, timeoutMs = 120_000) {
  await waitFor(
    async () => (await countRows(pool)).rows >= expected.size,
    timeoutMs,
    `${expected.size} rows`,
  ).catch(async (err) => {
    throw new Error(`${(err as Error).message}; have ${JSON.stringify(await countRows(pool))}`);
  });
  // A duration, not a wait: a straggling duplicate is something that must *not* happen, so
  // there is no condition to wait for; give one a moment to show up before counting.
  await sleep(500);
  const counts = await countRows(pool);
  expect(counts.rows).toBe(counts.distinct);
  const ids = await pool.query<{ id: string }>('SELECT id FROM events');
  const stored = new Set(ids.rows.map((r) => r.id));
  const lost = [...expected.keys()].filter((id) => !stored.has(id));
  const unexpected = [...stored].filter((id) => !expected.has(id));
  expect({ lost: lost.length, unexpected: unexpected.length }).toEqual({ lost: 0, unexpected: 0 });
  return counts;
}

/** Every partition's pending list is empty, the streams are drained, nothing is dead-lettered. */
export async function expectBufferDrained(redis: RedisLike, prefix: string, partitions = 8): Promise<void> {
  const state = await waitFor(
    async () => {
      let pending = 0;
      let length = 0;
      for (let p = 0; p < partitions; p++) {
        const key = `${prefix}:events:{${p}}`;
        length += await redis.xlen(key);
        const summary = (await redis.xpending(key, 'writers').catch(() => [0])) as [number];
        pending += Number(summary[0]);
      }
      return pending === 0 && length === 0 ? { pending, length } : null;
    },
    60_000,
    'buffer drained',
  );
  expect(state).toEqual({ pending: 0, length: 0 });
  expect(await redis.xlen(`${prefix}:dead`)).toBe(0);
}
