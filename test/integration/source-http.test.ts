import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ADMIN_KEY } from '../helpers/env.ts';
import { stackTest } from '../helpers/fixtures.ts';
import {
  API_HEADER,
  API_PASSWORD,
  API_TOKEN,
  API_USER,
  type SourceApi,
  startSourceApi,
} from '../helpers/source-api.ts';
import { createSourceCall, SOURCE_KEYS, sourceState, storedOf } from '../helpers/sources.ts';
import { call, type Stack, waitFor } from '../helpers/stack.ts';

/**
 * HTTP API sources (ARCHITECTURE §15) against a real local API made here: each pagination
 * kind and auth kind reads every record once; a 429 is waited out for its Retry-After, 5xx
 * and a page slower than the timeout are retried on the same page, a response over the size
 * limit fails the run with its reason; no page is skipped, none stored twice; records added
 * later are picked up; credentials show in no answer and no log line.
 */
const test = stackTest({
  workers: 1,
  env: {
    ...SOURCE_KEYS,
    SOURCE_POLL_MS: '100',
    SOURCE_HTTP_TIMEOUT_MS: '1000',
    SOURCE_HTTP_MAX_BYTES: '65536',
  },
});

let api: SourceApi;
const COUNT = 230;

beforeAll(async () => {
  api = await startSourceApi(COUNT);
});
afterAll(async () => {
  await api?.close();
});

let n = 0;
const httpSource = (path: string, overrides: Record<string, unknown> = {}) => ({
  kind: 'http',
  name: `api-${++n}-${Math.random().toString(36).slice(2, 6)}`,
  service: 'helpdesk',
  url: `${api.url}${path}`,
  dataPath: 'data.items',
  idField: 'id',
  typeField: 'kind',
  userIdField: 'user.id',
  timestampField: 'created_at',
  intervalSeconds: 1,
  ...overrides,
});

async function createAndWait(stack: Stack, body: Record<string, unknown>, expected = COUNT): Promise<string> {
  const res = await createSourceCall(stack, body);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  const id = res.body.id as string;
  await waitFor(
    async () => (await storedOf(stack, id)).rows >= expected,
    60_000,
    `${expected} records stored`,
  );
  return id;
}

describe('HTTP API source', () => {
  const kinds: [string, string, Record<string, unknown>][] = [
    [
      'cursor',
      '/bearer/cursor',
      {
        pagination: { type: 'cursor', param: 'cursor', nextPath: 'next' },
        auth: { type: 'bearer', token: API_TOKEN },
      },
    ],
    [
      'offset',
      '/basic/offset',
      {
        pagination: { type: 'offset', param: 'offset', limitParam: 'limit', limit: 40 },
        auth: { type: 'basic', username: API_USER, password: API_PASSWORD },
      },
    ],
    [
      'page',
      '/header/page',
      {
        pagination: { type: 'page', param: 'page', sizeParam: 'per_page', size: 50 },
        auth: { type: 'header', ...API_HEADER },
      },
    ],
    ['link', '/open/link', { pagination: { type: 'link' }, dataPath: undefined }],
  ];
  for (const [kind, path, settings] of kinds) {
    test(`${kind} pagination reads every record once, with its auth`, async ({ stack }) => {
      const id = await createAndWait(stack, httpSource(path, settings));
      expect(await storedOf(stack, id)).toEqual({ rows: COUNT, ids: COUNT });
      const { rows } = await stack.env.pool.query(
        `SELECT type, user_id, occurred_at FROM events WHERE key_id = $1 AND metadata->>'id' = 'r-3'`,
        [`source:${id}`],
      );
      expect(rows).toEqual([
        {
          type: 'ticket.closed',
          user_id: 'u-3',
          occurred_at: new Date(api.records[2]?.created_at as string),
        },
      ]);
      const view = await sourceState(stack, id);
      expect(view.secrets).toEqual(settings.auth ? ['auth'] : []);
      expect(JSON.stringify(view)).not.toMatch(
        new RegExp(`${API_TOKEN}|${API_PASSWORD}|${API_HEADER.value}`),
      );
      await call(stack.url, `/v1/admin/sources/${id}`, { method: 'DELETE', key: ADMIN_KEY });
    });
  }

  test('a 429 is waited out for its Retry-After, 5xx and slow pages are retried: every record once', async ({
    stack,
  }) => {
    // The third page (offset 50) answers 429 (Retry-After 1 s), then 503 twice, then too slowly, then its records.
    api.faults.set('/open/offset?offset=50', [
      { status: 429, retryAfter: '1' },
      { status: 503 },
      { status: 502 },
      { delayMs: 2_500 },
    ]);
    const id = await createAndWait(
      stack,
      httpSource('/open/offset', {
        pagination: { type: 'offset', param: 'offset', limitParam: 'limit', limit: 25 },
      }),
    );
    await waitFor(
      async () => ((await sourceState(stack, id)).state as { rowsRead: number }).rowsRead >= COUNT,
    );
    expect(await storedOf(stack, id)).toEqual({ rows: COUNT, ids: COUNT });
    const third = api.log.filter((l) => l.path.startsWith('/open/offset?offset=50&'));
    expect(third.map((l) => l.status).slice(0, 5)).toEqual([429, 503, 502, 200, 200]);
    // The retry after the 429 came no sooner than it asked.
    expect((third[1]?.at ?? 0) - (third[0]?.at ?? 0)).toBeGreaterThanOrEqual(950);
    // No page skipped: every offset asked, in order, before the end.
    const offsets = [
      ...new Set(
        api.log
          .filter((l) => l.path.startsWith('/open/offset?'))
          .map((l) => Number(new URL(l.path, 'http://x').searchParams.get('offset'))),
      ),
    ];
    expect(offsets.slice(0, 10)).toEqual([0, 25, 50, 75, 100, 125, 150, 175, 200, 225]);
    const state = (await sourceState(stack, id)).state as Record<string, unknown>;
    expect(state).toMatchObject({ eventsAccepted: COUNT, eventsRejected: 0, failures: 0 });

    // Records added later are read by a later run, from where it stopped.
    api.add(7);
    await waitFor(async () => (await storedOf(stack, id)).rows === COUNT + 7, 30_000, 'new records');
    expect(await storedOf(stack, id)).toEqual({ rows: COUNT + 7, ids: COUNT + 7 });
    await call(stack.url, `/v1/admin/sources/${id}`, { method: 'DELETE', key: ADMIN_KEY });
  });

  test('a response over the size limit fails the run with its reason; the cursor stays on that page', async ({
    stack,
  }) => {
    api.faults.set(
      '/open/page?page=2',
      Array.from({ length: 50 }, () => ({ hugeBytes: 100_000 })),
    );
    const res = await createSourceCall(
      stack,
      httpSource('/open/page', {
        pagination: { type: 'page', param: 'page', sizeParam: 'per_page', size: 100 },
      }),
    );
    const id = res.body.id as string;
    const failed = await waitFor(async () => {
      const s = (await sourceState(stack, id)).state as {
        lastError: string | null;
        failures: number;
        position: unknown;
      };
      return s.lastError ? s : undefined;
    });
    expect(failed.lastError).toMatch(
      /source_unreadable: the response is larger than the limit of 65536 bytes/,
    );
    expect(failed.position).toEqual({ page: 2 });
    await waitFor(async () => (await storedOf(stack, id)).rows === 100, 30_000, 'the first page stored');
    // Once the API answers normally again, the run resumes on page 2.
    api.faults.delete('/open/page?page=2');
    await call(stack.url, `/v1/admin/sources/${id}`, {
      method: 'PATCH',
      body: { intervalSeconds: 1 },
      key: ADMIN_KEY,
    });
    await waitFor(
      async () => (await storedOf(stack, id)).rows === api.records.length,
      30_000,
      'the rest after the fault',
    );
    expect(await storedOf(stack, id)).toEqual({ rows: api.records.length, ids: api.records.length });
    const state = (await sourceState(stack, id)).state as Record<string, unknown>;
    expect(state.failures).toBe(0);
    await call(stack.url, `/v1/admin/sources/${id}`, { method: 'DELETE', key: ADMIN_KEY });
  });

  test('create refuses wrong credentials, a missing array and a next link to another origin', async ({
    stack,
  }) => {
    const wrong = await createSourceCall(
      stack,
      httpSource('/bearer/cursor', {
        pagination: { type: 'cursor' },
        auth: { type: 'bearer', token: 'not-the-token' },
      }),
    );
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toMatchObject({ code: 'source_unauthorized', details: [{ path: 'auth' }] });
    expect(JSON.stringify(wrong.body)).not.toContain('not-the-token');
    const noArray = await createSourceCall(stack, httpSource('/open/cursor', { dataPath: 'data.nothing' }));
    expect(noArray.body.error).toMatchObject({ code: 'source_unreadable', details: [{ path: 'dataPath' }] });
    const elsewhere = await createSourceCall(
      stack,
      httpSource('/open/elsewhere', { dataPath: undefined, pagination: { type: 'link' } }),
    );
    expect(elsewhere.body.error).toMatchObject({
      code: 'source_unreadable',
      details: [{ path: 'pagination' }],
    });
    const noTimestamp = await createSourceCall(
      stack,
      httpSource('/open/plain', { dataPath: undefined, timestampField: undefined }),
    );
    expect(noTimestamp.body.error).toMatchObject({
      code: 'invalid_request',
      details: [{ path: 'timestampField' }],
    });
    const badUrl = await createSourceCall(stack, httpSource('/x', { url: 'ftp://example.com/x' }));
    expect(badUrl.body.error).toMatchObject({ code: 'invalid_request', details: [{ path: 'url' }] });
  });

  test('a work process stopping gracefully hands its source over at once, not after the lease', async ({
    stack,
  }) => {
    // Slow pages, so the run is still going when its process is told to stop.
    api.faults.set(
      '/open/link',
      Array.from({ length: 40 }, () => ({ delayMs: 150 })),
    );
    const res = await createSourceCall(
      stack,
      httpSource('/open/link', { pagination: { type: 'link' }, dataPath: undefined }),
    );
    const id = res.body.id as string;
    const second = await stack.addWorker();
    const running = await waitFor(async () => {
      const s = (await sourceState(stack, id)).state as { runningOn: string | null; rowsRead: number };
      return s.runningOn && s.rowsRead >= 30 ? s.runningOn : undefined;
    });
    const holder = [stack.workers[0], second].find((w) => running.endsWith(`-${w?.child.pid}`));
    const stoppedAt = Date.now();
    expect(await holder?.stop()).toBe(0);
    await waitFor(
      async () => (await storedOf(stack, id)).rows >= api.records.length,
      30_000,
      'the rest by the other process',
    );
    const tookOver = Date.now() - stoppedAt;
    expect(await storedOf(stack, id)).toEqual({ rows: api.records.length, ids: api.records.length });
    // Well under SOURCE_LEASE_TTL_S (15 s): the lease was given back, not left to run out.
    expect(tookOver).toBeLessThan(10_000);
    const state = (await sourceState(stack, id)).state as { failures: number };
    expect(state.failures).toBe(0);
    await call(stack.url, `/v1/admin/sources/${id}`, { method: 'DELETE', key: ADMIN_KEY });
  });

  test('a change during a run stops that run: the next one reads with the new position, nothing stored twice', async ({
    stack,
  }) => {
    api.faults.set(
      '/open/page?page=',
      Array.from({ length: 30 }, () => ({ delayMs: 150 })),
    );
    const res = await createSourceCall(
      stack,
      httpSource('/open/page', {
        pagination: { type: 'page', param: 'page', sizeParam: 'per_page', size: 10 },
      }),
    );
    const id = res.body.id as string;
    await waitFor(async () => {
      const s = (await sourceState(stack, id)).state as { runningOn: string | null; rowsRead: number };
      return s.runningOn !== null && s.rowsRead >= 30;
    });
    const reset = await call(stack.url, `/v1/admin/sources/${id}`, {
      method: 'PATCH',
      body: { resetPosition: true },
      key: ADMIN_KEY,
    });
    expect(reset.body.state.position).toBeNull();
    await waitFor(async () => (await storedOf(stack, id)).rows >= api.records.length, 60_000, 'every record');
    // The new run read from the start: what the first had buffered came back as duplicates.
    const state = await waitFor(async () => {
      const s = (await sourceState(stack, id)).state as { eventsDuplicate: number; rowsRead: number };
      return s.eventsDuplicate >= 30 ? s : undefined;
    });
    expect(state.rowsRead).toBeGreaterThan(api.records.length);
    expect(await storedOf(stack, id)).toEqual({ rows: api.records.length, ids: api.records.length });
    const lost = stack.workers
      .flatMap((w) => w.logs)
      .filter((l) => String(l.msg).startsWith('source lease lost'));
    expect(lost.length).toBeGreaterThanOrEqual(1);
    await call(stack.url, `/v1/admin/sources/${id}`, { method: 'DELETE', key: ADMIN_KEY });
  });

  test('no log line of any process holds a credential', async ({ stack }) => {
    const lines = [...stack.api.logs, ...stack.workers.flatMap((w) => w.logs)].map((l) => JSON.stringify(l));
    expect(
      lines.filter((l) =>
        [API_TOKEN, API_PASSWORD, API_HEADER.value, 'not-the-token'].some((s) => l.includes(s)),
      ),
    ).toEqual([]);
  });
});
