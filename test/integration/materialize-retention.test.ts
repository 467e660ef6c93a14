import { describe, expect } from 'vitest';
import { agedEvents, ingestAll, isExpired, PASS_RETENTION } from '../helpers/aged-events.ts';
import { archiveStackTest } from '../helpers/fixtures.ts';
import { expectAppendTablesMatch, expectDailyCountsMatch } from '../helpers/mat-oracle.ts';
import { runTributary } from '../helpers/processes.ts';
import { call, type Stack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * Retention reaches the materialisations (ARCHITECTURE §7, §17): a pass that archives and
 * deletes expired events, or drops their month's partition, deletes their materialised rows
 * and daily counts too; what is left equals the oracle over the events left.
 */
const test = archiveStackTest({ workers: 1, env: { MATERIALIZE_POLL_MS: '100' } });

async function caughtUp(stack: Stack) {
  return waitFor(
    async () => {
      const m = await call(stack.url, '/v1/admin/materializations/kept');
      const b = m.body;
      return b.state === 'running' &&
        b.lag.pending === 0 &&
        b.lag.staleDays === 0 &&
        b.rebuildRequestedAt === null
        ? b
        : undefined;
    },
    45_000,
    'materialisation caught up',
    100,
  );
}

describe('retention and materialisations', () => {
  test('expired events leave every materialised table with them', async ({ stack }) => {
    const sent = agedEvents(400, 3);
    await ingestAll(stack, sent);
    const put = await call(stack.url, '/v1/admin/materializations/kept', {
      method: 'PUT',
      body: { destination: { kind: 'postgres', schema: 'kept' } },
    });
    expect(put.status).toBe(201);
    await caughtUp(stack);
    const pool = stack.env.pool;
    const before = await expectAppendTablesMatch(pool, 'kept');
    expect(before.tracks).toBe(sent.length);
    const pass = await runTributary(['retention'], stack.env.env({ ...PASS_RETENTION }));
    expect(pass.code, pass.stderr).toBe(0);
    const expired = sent.filter(isExpired).length;
    expect(expired).toBeGreaterThan(100);
    const after = await expectAppendTablesMatch(pool, 'kept');
    expect(after.tracks).toBe(sent.length - expired);
    await expectDailyCountsMatch(pool, 'kept');
    const oldest = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM kept.tracks t WHERE NOT EXISTS
         (SELECT 1 FROM events e WHERE e.occurred_at = t.occurred_at AND e.id = t.id AND e.service = t.service)`,
    );
    expect(oldest.rows[0]?.n).toBe(0);
    console.log(
      `[materialize-retention] ${expired} of ${sent.length} events expired; ${after.tracks} tracks left`,
    );
  });
});
