/**
 * Dead letters are inside erasure and export: an erasure deletes and counts the subject's
 * dead-lettered events, a replay afterwards (or racing it) never stores them, and an
 * export lists them, marked `"source":"dead_letter"`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entryFields } from '../../src/buffer/redis-reply.ts';
import { ADMIN_KEY } from '../helpers/env.ts';
import { documentedFetch } from '../helpers/openapi.ts';
import { call, event, type Stack, startStack, waitFor } from '../helpers/stack.ts';
import { waitUntilStored } from '../helpers/stored-once.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workers: 1, env: { STREAM_PARTITIONS: '2' } });
});
afterAll(async () => {
  await stack?.close();
});

const deadKey = () => `${stack.env.prefix}:dead`;

/**
 * Writes a storable event of `userId` into the dead-letter stream, as a worker leaves one
 * whose insert failed (a replay would store it now), received a minute ago.
 */
async function deadLetter(
  userId: string,
  extra: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  const at = new Date(Date.now() - 60_000).toISOString();
  const ev = {
    ...event({ userId, metadata: { n: Math.random() } }),
    timestamp: at,
    receivedAt: at,
    ...extra,
  };
  await stack.env.redis.xadd(
    deadKey(),
    '*',
    'stream',
    `${stack.env.prefix}:events:{1}`,
    'v',
    '1',
    'e',
    JSON.stringify(ev),
    'tp',
    '',
    'error',
    'insert failed',
    'deliveries',
    '1',
    'at',
    at,
  );
  return ev;
}

/** userIds of the events in the dead-letter stream. */
async function deadSubjects(): Promise<string[]> {
  const rows = await stack.env.redis.xrange(deadKey(), '-', '+');
  return rows.map(([, flat]) => String(JSON.parse(entryFields(flat).e ?? '{}').userId));
}

async function rowsOf(userId: string): Promise<number> {
  const { rows } = await stack.env.pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM events WHERE user_id = $1',
    [userId],
  );
  return rows[0]?.n ?? 0;
}

async function erase(userId: string): Promise<string> {
  const res = await call(stack.url, `/v1/users/${userId}/events`, { method: 'DELETE' });
  expect(res.status).toBe(202);
  return res.body.requestId as string;
}

async function completed(requestId: string) {
  return waitFor(
    async () => {
      const s = await call(stack.url, `/v1/dsar/${requestId}`);
      return s.body.status === 'completed' ? s.body : undefined;
    },
    60_000,
    'erasure completed',
  );
}

/** The buffer is empty and nothing is pending: every replayed entry has been through a worker. */
async function bufferDrained(): Promise<void> {
  await waitFor(async () => {
    const b = await call(stack.url, '/health/buffer');
    return b.body.length === 0 && b.body.pending === 0;
  });
}

describe('dead letters and data-subject requests', () => {
  it('export lists the subject’s dead letters, marked; erasure deletes and counts them; a replay after it stores none', async () => {
    const subject = 'dl-subject';
    const stored = event({ userId: subject });
    const sent = await call(stack.url, '/v1/events', { body: stored });
    expect(sent.status).toBe(202);
    await waitUntilStored(stack.env.pool, [String(stored.id)]);
    const mine = [await deadLetter(subject), await deadLetter(subject), await deadLetter(subject)];
    const others = [await deadLetter('dl-other'), await deadLetter('dl-other')];
    // A `userId` inside metadata does not make an event the subject's.
    others.push(await deadLetter('dl-other', { metadata: { userId: subject } }));

    const res = await documentedFetch(`${stack.url}/v1/users/${subject}/events/export`, {
      headers: { 'x-api-key': ADMIN_KEY },
    });
    expect(res.status).toBe(200);
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.source === 'database').map((l) => l.id)).toEqual([stored.id]);
    const dead = lines.filter((l) => l.source === 'dead_letter');
    expect(dead.map((l) => l.id).sort()).toEqual(mine.map((e) => e.id).sort());
    for (const l of dead) {
      const sentEvent = mine.find((e) => e.id === l.id);
      expect(l).toMatchObject({ userId: subject, service: 'checkout', metadata: sentEvent?.metadata });
    }
    expect(lines).toHaveLength(4);

    const done = await completed(await erase(subject));
    expect(done.deleted).toMatchObject({ database: 1, deadLetter: 3 });
    expect((await deadSubjects()).sort()).toEqual(['dl-other', 'dl-other', 'dl-other']);

    // A replay now brings back the other subject's events only.
    const replay = await call(stack.url, '/v1/admin/dead-letter/replay?limit=1000', { method: 'POST' });
    expect(replay.body).toEqual({ replayed: 3 });
    await waitUntilStored(
      stack.env.pool,
      others.map((e) => String(e.id)),
    );
    await bufferDrained();
    expect(await rowsOf(subject)).toBe(0);
    // The export has nothing left of the subject.
    const after = await documentedFetch(`${stack.url}/v1/users/${subject}/events/export`, {
      headers: { 'x-api-key': ADMIN_KEY },
    });
    expect((await after.text()).trim()).toBe('');
  });

  it('an erasure racing a replay: each dead letter of the subject is erased once (as a dead letter, from the buffer, or as a row), none stays', async () => {
    const subject = 'dl-racer';
    const n = 40;
    for (let i = 0; i < n; i++) await deadLetter(subject);
    const bystander = await deadLetter('dl-bystander');

    const [requestId, replay] = await Promise.all([
      erase(subject),
      call(stack.url, '/v1/admin/dead-letter/replay?limit=1000', { method: 'POST' }),
    ]);
    expect(replay.status).toBe(200);
    await completed(requestId);
    // Replayed copies may reach a worker after the job ended; its drop count goes on rising.
    // A copy stored before the request was recorded is deleted as a row.
    const total = (d: Record<string, number>) => (d.deadLetter ?? 0) + (d.buffer ?? 0) + (d.database ?? 0);
    const status = await waitFor(async () => {
      const s = await call(stack.url, `/v1/dsar/${requestId}`);
      return total(s.body.deleted) >= n ? s.body : undefined;
    });
    expect(total(status.deleted)).toBe(n);
    await bufferDrained();
    expect(await rowsOf(subject)).toBe(0);
    expect(await deadSubjects()).not.toContain(subject);
    // A second replay has nothing of the subject left to move.
    await call(stack.url, '/v1/admin/dead-letter/replay?limit=1000', { method: 'POST' });
    await waitUntilStored(stack.env.pool, [String(bystander.id)]);
    await bufferDrained();
    expect(await rowsOf(subject)).toBe(0);
  });

  it('dead letters of an anonymousId linked to the subject (alias) are exported and erased with it; others stay', async () => {
    const [A, U] = ['dl-anon-a', 'dl-user-u'];
    const linking = event({ type: 'alias', userId: U, metadata: { previousId: A } });
    expect((await call(stack.url, '/v1/events', { body: linking })).status).toBe(202);
    await waitUntilStored(stack.env.pool, [String(linking.id)]);
    const anonymous = { userId: undefined, anonymousId: A };
    const mine = [await deadLetter('', anonymous), await deadLetter('', anonymous), await deadLetter(U)];
    const others = [
      await deadLetter('dl-other-3', { anonymousId: 'dl-anon-other' }),
      await deadLetter('', { userId: undefined, anonymousId: 'dl-anon-other' }),
    ];

    const res = await documentedFetch(`${stack.url}/v1/users/${U}/events/export`, {
      headers: { 'x-api-key': ADMIN_KEY },
    });
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; source: string });
    expect(lines.filter((l) => l.source === 'database').map((l) => l.id)).toEqual([linking.id]);
    expect(
      lines
        .filter((l) => l.source === 'dead_letter')
        .map((l) => l.id)
        .sort(),
    ).toEqual(mine.map((e) => e.id).sort());

    const done = await completed(await erase(U));
    expect(done.deleted).toMatchObject({ database: 1, deadLetter: 3 });
    const left = (await stack.env.redis.xrange(deadKey(), '-', '+')).map(
      ([, flat]) => JSON.parse(entryFields(flat).e ?? '{}').id as string,
    );
    expect(left.sort()).toEqual(others.map((e) => e.id).sort());
  });
});
