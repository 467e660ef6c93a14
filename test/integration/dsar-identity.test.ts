import { describe, expect } from 'vitest';
import { readArchive } from '../helpers/archive-reader.ts';
import { archiveStackTest } from '../helpers/fixtures.ts';
import { documentedFetch } from '../helpers/openapi.ts';
import { cliResult, runTributary } from '../helpers/processes.ts';
import { call, event, type Stack, waitFor } from '../helpers/stack.ts';
import { expectStoredExactlyOnce, waitUntilStored } from '../helpers/stored-once.ts';

/*
 * Compliance by userId or anonymousId, and the links between them (ARCHITECTURE §12): an
 * alias call (native `type: "alias"`, `userId`, `metadata.previousId`, the shape a Segment
 * alias becomes) or an event carrying both ids links them, so erasing, exporting or opting
 * out one covers every id linked to it.
 */

const DAY_MS = 86_400_000;
const test = archiveStackTest({ workers: 1, settings: { DSAR_LOCK_TTL_MS: '3000' } });

/** Every event id the events table should hold, once each, across the file's tests. */
const inDb = new Set<string>();

type Sent = Record<string, unknown> & { id: string };

const ev = (fields: Record<string, unknown>, daysAgo = 0): Sent =>
  event({
    ...fields,
    ...(daysAgo > 0 ? { timestamp: new Date(Date.now() - daysAgo * DAY_MS).toISOString() } : {}),
  }) as Sent;
const many = (n: number, fields: Record<string, unknown>, daysAgo = 0) =>
  Array.from({ length: n }, () => ev(fields, daysAgo));
const alias = (previousId: string, userId: string) => ev({ type: 'alias', userId, metadata: { previousId } });

async function send(
  stack: Stack,
  events: Sent[],
): Promise<{ accepted: number; skipped: number; ids: string[] }> {
  const res = await call(stack.url, '/v1/events/batch', { body: { events } });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body;
}

/** Sends the events and waits until every one is stored. */
async function store(stack: Stack, events: Sent[]): Promise<void> {
  const sent = await send(stack, events);
  expect(sent.accepted).toBe(events.length);
  await waitUntilStored(stack.env.pool, sent.ids);
  for (const id of sent.ids) inDb.add(id);
}

/** Rows carrying any of the ids as user_id or anonymous_id. */
async function rowsOf(stack: Stack, ...ids: string[]): Promise<string[]> {
  const { rows } = await stack.env.pool.query<{ id: string }>(
    'SELECT id FROM events WHERE user_id = ANY($1::text[]) OR anonymous_id = ANY($1::text[])',
    [ids],
  );
  return rows.map((r) => r.id);
}

async function erase(stack: Stack, subject: string): Promise<string> {
  const res = await call(stack.url, `/v1/users/${encodeURIComponent(subject)}/events`, { method: 'DELETE' });
  expect(res.status).toBe(202);
  return res.body.requestId as string;
}

async function completed(stack: Stack, requestId: string) {
  return waitFor(
    async () => {
      const s = await call(stack.url, `/v1/dsar/${requestId}`);
      return s.body.status === 'completed' ? s.body : undefined;
    },
    60_000,
    'erasure completed',
  );
}

async function exportOf(stack: Stack, subject: string): Promise<Record<string, unknown>[]> {
  const res = await documentedFetch(`${stack.url}/v1/users/${encodeURIComponent(subject)}/events/export`, {
    headers: { 'x-api-key': 'test-admin-key-0123456789abcdef' },
  });
  expect(res.status).toBe(200);
  const text = (await res.text()).trim();
  return text === '' ? [] : text.split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function archive(stack: Stack, s3: Parameters<typeof readArchive>[0]) {
  const pass = await runTributary(['retention'], stack.env.env({ RETENTION_DAYS: '60' }));
  expect(pass.code, pass.stderr).toBe(0);
  return { rowsArchived: cliResult(pass.stdout).rowsArchived, read: () => readArchive(s3) };
}

/**
 * Stops the file's worker once everything stored is acknowledged (an entry redelivered
 * after the kill would be counted as dropped): what is sent next stays in the buffer.
 */
async function stopWorkers(stack: Stack): Promise<void> {
  await waitFor(async () => {
    const b = await call(stack.url, '/health/buffer');
    return b.body.length === 0 && b.body.pending === 0;
  });
  for (const w of stack.workers) await w.kill9();
  stack.workers.length = 0;
}

describe('compliance by userId or anonymousId, with linked ids', () => {
  test('erasure by anonymousId removes the events carrying it and keeps every other', async ({ stack }) => {
    const mine = many(5, { anonymousId: 'anon-e1' });
    const others = [
      ...many(3, { userId: 'bystander-1', anonymousId: 'anon-other-1' }),
      ...many(2, { userId: 'bystander-2' }),
      ...many(2, { anonymousId: 'anon-e1-not' }),
    ];
    await store(stack, [...mine, ...others]);
    const done = await completed(stack, await erase(stack, 'anon-e1'));
    expect(done.deleted).toEqual({
      database: 5,
      buffer: 0,
      checkpoint: 0,
      archive: 0,
      deadLetter: 0,
      materialized: 0,
    });
    expect(await rowsOf(stack, 'anon-e1')).toEqual([]);
    for (const e of mine) inDb.delete(e.id);
    await expectStoredExactlyOnce(stack.env.pool, inDb);
  });

  test('alias(A → U), then erasing U erases A’s and U’s events in the database, the buffer and the archive', async ({
    stack,
    s3,
  }) => {
    const [A, U] = ['anon-a2', 'user-u2'];
    const oldA = many(5, { anonymousId: A }, 100);
    const oldU = many(5, { userId: U }, 101);
    const oldOthers = [
      ...many(4, { userId: 'bystander-3' }, 102),
      ...many(2, { anonymousId: 'anon-by-3' }, 103),
    ];
    const recent = [...many(4, { anonymousId: A }), alias(A, U), ...many(4, { userId: U })];
    const recentOthers = many(3, { userId: 'bystander-3', anonymousId: 'anon-by-3' });
    await store(stack, [...oldA, ...oldU, ...oldOthers, ...recent, ...recentOthers]);
    const pass = await archive(stack, s3.config);
    expect(pass.rowsArchived).toBe(16);
    for (const e of [...oldA, ...oldU, ...oldOthers]) inDb.delete(e.id);

    await stopWorkers(stack);
    const buffered = [...many(3, { anonymousId: A }), ...many(3, { userId: U })];
    const bufferedOthers = many(4, { userId: 'bystander-3' });
    expect((await send(stack, [...buffered, ...bufferedOthers])).accepted).toBe(10);
    const requestId = await erase(stack, U);
    await stack.addWorker();
    const done = await completed(stack, requestId);

    expect(done.deleted).toEqual({
      database: 9,
      buffer: 6,
      checkpoint: 0,
      archive: 10,
      deadLetter: 0,
      materialized: 0,
    });
    expect(await rowsOf(stack, A, U)).toEqual([]);
    const archived = (await pass.read()).rows;
    expect(archived.filter((r) => r.user_id === U || r.anonymous_id === A)).toEqual([]);
    expect(new Set(archived.map((r) => r.id))).toEqual(new Set(oldOthers.map((e) => e.id)));
    for (const e of recent) inDb.delete(e.id);
    for (const e of [...recentOthers, ...bufferedOthers]) inDb.add(e.id);
    await expectStoredExactlyOnce(stack.env.pool, inDb);
    // The links of erased ids are gone with them.
    const links = await stack.env.pool.query('SELECT 1 FROM subject_links WHERE $1 IN (from_id, to_id)', [A]);
    expect(links.rowCount).toBe(0);
  });

  test('erasing the anonymous id erases the user’s events too, and the ids linked to it by events carrying both', async ({
    stack,
  }) => {
    const [A, U, B] = ['anon-a3', 'user-u3', 'anon-b3'];
    const theirs = [
      ...many(3, { anonymousId: A }),
      ev({ type: 'identify', userId: U, anonymousId: A }),
      ...many(3, { userId: U }),
      ...many(2, { userId: U, anonymousId: B }),
      ...many(2, { anonymousId: B }),
    ];
    const others = [
      ...many(2, { userId: 'bystander-4', anonymousId: 'anon-by-4' }),
      ...many(2, { userId: 'u3' }),
    ];
    await store(stack, [...theirs, ...others]);
    const done = await completed(stack, await erase(stack, A));
    expect(done.deleted.database).toBe(theirs.length);
    expect(await rowsOf(stack, A, U, B)).toEqual([]);
    for (const e of theirs) inDb.delete(e.id);
    await expectStoredExactlyOnce(stack.env.pool, inDb);
  });

  test('an alias event still in the buffer when the erasure is asked for: its link is found after the wait', async ({
    stack,
  }) => {
    const [A, U] = ['anon-a4', 'user-u4'];
    const storedA = many(3, { anonymousId: A });
    await store(stack, storedA);
    await stopWorkers(stack);
    const bufferedA = many(2, { anonymousId: A });
    const bufferedU = [alias(A, U), ...many(2, { userId: U })];
    const others = many(3, { anonymousId: 'anon-by-4' });
    expect((await send(stack, [...bufferedA, ...bufferedU, ...others])).accepted).toBe(8);
    // Only the alias call, not yet stored, links A to U.
    const requestId = await erase(stack, U);
    await stack.addWorker();
    const done = await completed(stack, requestId);
    expect(await rowsOf(stack, A, U)).toEqual([]);
    // A's buffered events are stored (A was not known yet) and deleted, or dropped once it is.
    expect(done.deleted.database + done.deleted.buffer).toBe(8);
    expect(done.deleted.database).toBeGreaterThanOrEqual(3);
    for (const e of storedA) inDb.delete(e.id);
    for (const e of others) inDb.add(e.id);
    await expectStoredExactlyOnce(stack.env.pool, inDb);
  });

  test('export of A after alias(A → U) lists U’s events too, from the database and the archive, each once', async ({
    stack,
    s3,
  }) => {
    const [A, U] = ['anon-a5', 'user-u5'];
    const old = [...many(2, { anonymousId: A }, 90), ev({ userId: U, anonymousId: A }, 91)];
    const recent = [
      ...many(3, { anonymousId: A }),
      alias(A, U),
      ...many(3, { userId: U }),
      ev({ userId: U, anonymousId: A }),
    ];
    const others = [
      ...many(2, { userId: 'bystander-5', anonymousId: 'anon-by-5' }),
      ...many(1, { userId: 'u5' }),
    ];
    await store(stack, [...old, ...recent, ...others]);
    expect((await archive(stack, s3.config)).rowsArchived).toBe(3);
    for (const e of old) inDb.delete(e.id);

    for (const subject of [A, U]) {
      const lines = await exportOf(stack, subject);
      expect(lines.map((l) => l.id).sort()).toEqual([...old, ...recent].map((e) => e.id).sort());
      expect(lines.filter((l) => l.source === 'archive')).toHaveLength(3);
      const both = lines.find((l) => l.id === old[2]?.id);
      expect(both).toMatchObject({ userId: U, anonymousId: A, source: 'archive' });
    }
    await expectStoredExactlyOnce(stack.env.pool, inDb);
  });

  test('opt-out by anonymousId skips events carrying it; opting U out after alias(A → U) skips A’s; opt-in undoes it', async ({
    stack,
  }) => {
    const put = await call(stack.url, '/v1/users/anon-o1/opt-out', { method: 'PUT' });
    expect(put.body).toMatchObject({ userId: 'anon-o1', optedOut: true });
    const single = await call(stack.url, '/v1/events', { body: ev({ anonymousId: 'anon-o1' }) });
    expect(single.body).toMatchObject({ status: 'skipped', reason: 'user_opt_out' });
    const kept = ev({ userId: 'bystander-6', anonymousId: 'anon-o1-not' });
    const batch = await send(stack, [ev({ userId: 'someone', anonymousId: 'anon-o1' }), kept]);
    expect(batch).toMatchObject({ accepted: 1, skipped: 1 });
    await waitUntilStored(stack.env.pool, batch.ids);
    inDb.add(kept.id);

    const [A, U] = ['anon-a7', 'user-u7'];
    const linking = alias(A, U);
    await store(stack, [linking]);
    expect((await call(stack.url, `/v1/users/${U}/opt-out`, { method: 'PUT' })).status).toBe(200);
    const skipped = await send(stack, [
      ev({ anonymousId: A }),
      ev({ userId: U }),
      ev({ userId: 'bystander-6' }),
    ]);
    expect(skipped).toMatchObject({ accepted: 1, skipped: 2 });
    await waitUntilStored(stack.env.pool, skipped.ids);
    for (const id of skipped.ids) inDb.add(id);

    const back = await call(stack.url, `/v1/users/${U}/opt-out`, { method: 'DELETE' });
    expect(back.body).toMatchObject({ userId: U, optedOut: false });
    const again = [ev({ anonymousId: A }), ev({ userId: U })];
    await store(stack, again);
    // The opt-out of anon-o1 was not U's to undo.
    const still = await call(stack.url, '/v1/events', { body: ev({ anonymousId: 'anon-o1' }) });
    expect(still.body).toMatchObject({ status: 'skipped' });
    expect((await rowsOf(stack, 'anon-o1')).length).toBe(0);
    await expectStoredExactlyOnce(stack.env.pool, inDb);
  });
});
