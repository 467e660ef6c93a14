import type pg from 'pg';
import { expect } from 'vitest';
import type { RedisLike } from '../../src/buffer/redis-client.ts';
import { call, event, waitFor } from './stack.ts';

/**
 * The client's side of a fault test: sends events and remembers exactly which ids the
 * API acknowledged (202), so the end state can be counted against it.
 */
export class Ledger {
  readonly acknowledged = new Set<string>();
  sent = 0;
  /** Responses other than 202, by status (a socket error counts as 0). */
  readonly refusals = new Map<number, number>();
  #batch = 0;

  /** One batch of `size` new events; resolves with the HTTP status (0 for a network error). */
  async sendBatch(url: string, size: number): Promise<number> {
    const n = this.#batch++;
    this.sent += size;
    try {
      const res = await call(url, '/v1/events/batch', {
        body: { events: Array.from({ length: size }, (_, i) => event({ userId: `u${n % 97}-${i % 13}` })) },
      });
      if (res.status === 202) for (const id of res.body.ids as string[]) this.acknowledged.add(id);
      else this.refusals.set(res.status, (this.refusals.get(res.status) ?? 0) + 1);
      return res.status;
    } catch {
      this.refusals.set(0, (this.refusals.get(0) ?? 0) + 1);
      return 0;
    }
  }

  /** Sends batches back to back until `until()` is true; returns the number of batches sent. */
  async sendWhile(url: string, size: number, keepGoing: () => boolean, pauseMs = 0): Promise<number> {
    let batches = 0;
    while (keepGoing()) {
      await this.sendBatch(url, size);
      batches++;
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
    return batches;
  }
}

/** Rows in the events table: total and distinct ids. */
export async function countRows(pool: pg.Pool): Promise<{ rows: number; distinct: number }> {
  const r = await pool.query<{ rows: number; distinct: number }>(
    'SELECT count(*)::int AS rows, count(DISTINCT id)::int AS "distinct" FROM events',
  );
  return r.rows[0] ?? { rows: 0, distinct: 0 };
}

/**
 * Waits until the table holds exactly the expected ids, once each, and asserts it:
 * nothing lost, nothing doubled, nothing that was not acknowledged.
 */
export async function expectStoredExactlyOnce(pool: pg.Pool, expected: Set<string>, timeoutMs = 120_000) {
  await waitFor(
    async () => (await countRows(pool)).rows >= expected.size,
    timeoutMs,
    `${expected.size} rows`,
  ).catch(async (err) => {
    throw new Error(`${(err as Error).message}; have ${JSON.stringify(await countRows(pool))}`);
  });
  // Give a straggling duplicate a moment to show up before counting.
  await new Promise((r) => setTimeout(r, 500));
  const counts = await countRows(pool);
  expect(counts.rows).toBe(counts.distinct);
  const ids = await pool.query<{ id: string }>('SELECT id FROM events');
  const stored = new Set(ids.rows.map((r) => r.id));
  const lost = [...expected].filter((id) => !stored.has(id));
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
