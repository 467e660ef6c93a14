import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Stack, startStack, waitFor } from '../helpers/stack.ts';

let stack: Stack;
const base = Date.now() - 5 * 86_400_000;
const all: {
  id: string;
  service: string;
  type: string;
  userId: string;
  anonymousId?: string;
  timestamp: string;
}[] = [];
const TYPES = ['page.view', 'order.placed', 'cart.updated'];

beforeAll(async () => {
  stack = await startStack({ workers: 1 });
  for (let i = 0; i < 250; i++) {
    all.push({
      id: crypto.randomUUID(),
      service: i % 2 === 0 ? 'web' : 'api',
      type: TYPES[i % 7 === 0 ? 1 : i % 5 === 0 ? 2 : 0] as string,
      userId: `user-${i % 5}`,
      ...(i % 3 === 0 ? { anonymousId: `anon-${i % 4}` } : {}),
      // Every tenth pair shares a timestamp, so pagination must break ties by id.
      timestamp: new Date(base + Math.floor(i / 2) * 60_000).toISOString(),
    });
  }
  const events = all.map((e) => ({ ...e, metadata: { i: 1 } }));
  const res = await call(stack.url, '/v1/events/batch', { body: { events } });
  expect(res.body.accepted).toBe(250);
  await waitFor(async () => {
    const r = await stack.env.pool.query('SELECT count(*)::int AS n FROM events');
    return r.rows[0].n === 250;
  });
});
afterAll(async () => {
  await stack?.close();
});

async function pages(query: string): Promise<{ id: string; timestamp: string }[]> {
  const out: { id: string; timestamp: string }[] = [];
  let cursor: string | null = null;
  do {
    const res = await call(stack.url, `/v1/events?${query}${cursor ? `&cursor=${cursor}` : ''}`);
    expect(res.status).toBe(200);
    out.push(...res.body.events);
    cursor = res.body.nextCursor;
  } while (cursor);
  return out;
}

const newestFirst = (list: typeof all) =>
  [...list]
    .sort((a, b) => b.timestamp.localeCompare(a.timestamp) || b.id.localeCompare(a.id))
    .map((e) => e.id);

describe('GET /v1/events', () => {
  it('pages through everything newest first, without gaps or repeats', async () => {
    const got = await pages('limit=7');
    expect(got.map((e) => e.id)).toEqual(newestFirst(all));
  });

  it('filters by service, user, anonymous id and time range', async () => {
    expect((await pages('service=web&limit=50')).map((e) => e.id)).toEqual(
      newestFirst(all.filter((e) => e.service === 'web')),
    );
    expect((await pages('userId=user-3&limit=10')).map((e) => e.id)).toEqual(
      newestFirst(all.filter((e) => e.userId === 'user-3')),
    );
    const anon = all.filter((e) => e.anonymousId === 'anon-2');
    expect(anon.length).toBeGreaterThan(10);
    expect((await pages('anonymousId=anon-2&limit=10')).map((e) => e.id)).toEqual(newestFirst(anon));
    const from = all[100]?.timestamp as string;
    const to = all[150]?.timestamp as string;
    const ranged = await pages(`from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}&limit=1000`);
    expect(ranged.map((e) => e.id)).toEqual(
      newestFirst(all.filter((e) => e.timestamp >= from && e.timestamp <= to)),
    );
    const none = await call(stack.url, '/v1/events?type=nothing');
    expect(none.body).toEqual({ events: [], nextCursor: null });
  });

  it('filters by type, alone and with a service, across pages', async () => {
    for (const type of TYPES) {
      const ofType = all.filter((e) => e.type === type);
      expect(ofType.length).toBeGreaterThan(10);
      expect(
        (await pages(`type=${type}&limit=9`)).map((e) => e.id),
        type,
      ).toEqual(newestFirst(ofType));
      for (const service of ['web', 'api']) {
        expect((await pages(`service=${service}&type=${type}&limit=4`)).map((e) => e.id)).toEqual(
          newestFirst(ofType.filter((e) => e.service === service)),
        );
      }
    }
  });

  it('returns events in the shape they were sent', async () => {
    const res = await call(stack.url, '/v1/events?limit=1');
    const first = all.find((e) => e.id === newestFirst(all)[0]);
    expect(res.body.events[0]).toMatchObject({
      id: first?.id,
      service: first?.service,
      type: first?.type,
      timestamp: first?.timestamp,
      userId: first?.userId,
      anonymousId: first?.anonymousId ?? null,
      metadata: { i: 1 },
    });
  });

  it('400 for bad parameters, 401/403 for keys', async () => {
    for (const q of ['limit=0', 'limit=1001', 'from=yesterday', 'bogus=1']) {
      const res = await call(stack.url, `/v1/events?${q}`);
      expect(res.status, q).toBe(400);
      expect(res.body.error.code).toBe('invalid_query');
    }
    const cursor = await call(stack.url, '/v1/events?cursor=garbage');
    expect([cursor.status, cursor.body.error.code]).toEqual([400, 'invalid_cursor']);
    expect((await call(stack.url, '/v1/events', { key: null })).status).toBe(401);
    const ingestOnly = await call(stack.url, '/v1/admin/keys', { body: { name: 'w', scopes: ['ingest'] } });
    expect((await call(stack.url, '/v1/events', { key: ingestOnly.body.key })).status).toBe(403);
  });
});
