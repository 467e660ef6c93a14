import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventIdOf, mapSegmentCall } from '../../src/events/segment.ts';
import { call, type Stack, startStack } from '../helpers/stack.ts';
import { waitUntilStored } from '../helpers/stored-once.ts';

/**
 * Segment's Tracking API through raw HTTP (ARCHITECTURE §12): the auth forms, the mapping
 * of every call type, ids that survive retries, per-call refusals inside a 200, the
 * limits, gzip, text/plain, clock skew, and CORS on the ingest routes.
 */
const SERVICE = 'seg-web';
const ORIGIN = 'https://shop.example';
let stack: Stack;
let writeKey: string;

beforeAll(async () => {
  stack = await startStack({ workers: 1, env: { CORS_ORIGINS: `${ORIGIN}, https://other.example` } });
  // Stored sorted: the key's first service, where its calls go, is seg-web.
  writeKey = await keyFor({ services: ['seg-x-second', SERVICE] });
});
afterAll(async () => {
  await stack?.close();
});

async function keyFor(body: Record<string, unknown>): Promise<string> {
  const res = await call(stack.url, '/v1/admin/keys', {
    body: { name: 'segment', scopes: ['ingest'], ...body },
  });
  expect(res.status).toBe(201);
  return res.body.key;
}

const basic = (key: string) => ({ authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` });

/** A Segment request with the write key as Basic auth, as analytics-node sends it. */
function segment(path: string, body: unknown, opts: Parameters<typeof call>[2] = {}) {
  return call(stack.url, path, {
    key: null,
    body,
    ...opts,
    headers: { ...basic(writeKey), ...opts.headers },
  });
}

const track = (extra: Record<string, unknown> = {}) => ({
  type: 'track',
  event: 'Order Completed',
  messageId: `node-next-${Date.now()}-${randomUUID()}`,
  anonymousId: `anon-${randomUUID()}`,
  properties: { total: 12.5 },
  timestamp: new Date().toISOString(),
  ...extra,
});

interface Row {
  id: string;
  service: string;
  type: string;
  user_id: string | null;
  anonymous_id: string | null;
  metadata: Record<string, unknown>;
  occurred_at: Date;
}

async function rowsOf(ids: string[]): Promise<Row[]> {
  await waitUntilStored(stack.env.pool, ids);
  const { rows } = await stack.env.pool.query<Row>(
    'SELECT id, service, type, user_id, anonymous_id, metadata, occurred_at FROM events WHERE id = ANY($1::uuid[])',
    [ids],
  );
  return ids.map((id) => rows.find((r) => r.id === id) as Row);
}

const idOf = (call: { messageId: string }) => eventIdOf(SERVICE, call.messageId);

describe('authentication', () => {
  it('takes the write key as Basic user name, writeKey in the body, Bearer or x-api-key', async () => {
    const calls = [track(), track(), track(), track()];
    const viaBasic = await segment('/v1/track', calls[0]);
    expect(viaBasic.status).toBe(200);
    expect(viaBasic.body).toMatchObject({
      success: true,
      accepted: 1,
      ids: [idOf(calls[0] as { messageId: string })],
    });
    const viaBody = await call(stack.url, '/v1/track', { key: null, body: { ...calls[1], writeKey } });
    expect(viaBody.body).toMatchObject({ success: true, accepted: 1 });
    const viaBatchBody = await call(stack.url, '/v1/batch', {
      key: null,
      body: { batch: [calls[2]], writeKey },
    });
    expect(viaBatchBody.body).toMatchObject({ success: true, accepted: 1 });
    const viaBearer = await call(stack.url, '/v1/track', {
      key: null,
      body: calls[3],
      headers: { authorization: `Bearer ${writeKey}` },
    });
    expect(viaBearer.body).toMatchObject({ success: true, accepted: 1 });
    expect((await call(stack.url, '/v1/track', { key: writeKey, body: track() })).status).toBe(200);

    // Stored under the key's first service, and the key never stored or logged.
    const rows = await rowsOf(calls.map((c) => idOf(c)));
    expect(rows.map((r) => r.service)).toEqual([SERVICE, SERVICE, SERVICE, SERVICE]);
    expect(JSON.stringify(rows)).not.toContain(writeKey);
    expect(JSON.stringify(stack.api.logs)).not.toContain(writeKey.slice(8));
  });

  it('401 for a wrong or missing key, 403 service_required for a key with no service, 403 without ingest', async () => {
    const wrong = 'trb_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
    for (const res of [
      await call(stack.url, '/v1/track', { key: null, body: track(), headers: basic(wrong) }),
      await call(stack.url, '/v1/batch', { key: null, body: { batch: [track()], writeKey: wrong } }),
      await call(stack.url, '/v1/batch', { key: null, body: { batch: [track()] } }),
    ]) {
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('unauthorized');
    }
    const unbound = await keyFor({ services: [] });
    const noService = await call(stack.url, '/v1/identify', {
      key: null,
      body: { userId: 'u', writeKey: unbound },
    });
    expect(noService.status).toBe(403);
    expect(noService.body.error.code).toBe('service_required');
    const readOnly = await keyFor({ services: [SERVICE], scopes: ['read'] });
    const forbidden = await call(stack.url, '/v1/batch', {
      key: null,
      body: { batch: [track()] },
      headers: basic(readOnly),
    });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error.code).toBe('forbidden');
  });
});

describe('mapping', () => {
  it('stores every call type with its type, userId, anonymousId and the rest in metadata', async () => {
    const anon = `anon-${randomUUID()}`;
    const user = `user-${randomUUID()}`;
    const common = { anonymousId: anon, messageId: '', timestamp: new Date().toISOString() };
    const batch = [
      { ...common, type: 'track', event: 'Signed Up', properties: { plan: 'pro' }, messageId: randomUUID() },
      {
        ...common,
        type: 'identify',
        userId: user,
        traits: { email: 'a@b.c' },
        messageId: `m-${randomUUID()}`,
      },
      {
        ...common,
        type: 'page',
        name: 'Home',
        category: 'Docs',
        properties: { path: '/' },
        messageId: `m-${randomUUID()}`,
      },
      { ...common, type: 'screen', name: 'Cart', messageId: `m-${randomUUID()}` },
      {
        ...common,
        type: 'group',
        userId: user,
        groupId: 'acme',
        traits: { size: 3 },
        messageId: `m-${randomUUID()}`,
      },
      { type: 'alias', userId: user, previousId: anon, messageId: `m-${randomUUID()}` },
    ];
    const res = await segment('/v1/batch', {
      batch,
      context: { library: { name: 'analytics-node', version: '3.1.0' } },
      integrations: { All: true },
      sentAt: new Date().toISOString(),
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ success: true, accepted: 6, rejected: [] });
    const rows = await rowsOf(batch.map((c) => idOf(c)));
    expect(rows.map((r) => [r.type, r.user_id, r.anonymous_id])).toEqual([
      ['Signed Up', null, anon],
      ['identify', user, anon],
      ['page', null, anon],
      ['screen', null, anon],
      ['group', user, anon],
      ['alias', user, null],
    ]);
    const [trackRow, identifyRow, pageRow, , groupRow, aliasRow] = rows as Row[];
    expect(trackRow?.metadata).toMatchObject({
      segmentType: 'track',
      properties: { plan: 'pro' },
      context: { library: { name: 'analytics-node' } },
      integrations: { All: true },
    });
    expect(trackRow?.metadata).not.toHaveProperty('messageId');
    expect(identifyRow?.metadata).toMatchObject({ segmentType: 'identify', traits: { email: 'a@b.c' } });
    expect(identifyRow?.metadata.messageId).toBe(batch[1]?.messageId);
    expect(pageRow?.metadata).toMatchObject({ name: 'Home', category: 'Docs', properties: { path: '/' } });
    expect(groupRow?.metadata).toMatchObject({ groupId: 'acme', traits: { size: 3 } });
    expect(aliasRow?.metadata).toMatchObject({ segmentType: 'alias', previousId: anon });

    // The anonymousId filter of GET /v1/events finds the calls made before the user was known.
    const read = await call(stack.url, `/v1/events?anonymousId=${anon}`);
    expect(read.body.events).toHaveLength(5);
  });

  it('each single-call route stores its own type', async () => {
    const ids: string[] = [];
    for (const type of ['identify', 'page', 'screen', 'group'] as const) {
      const body = { userId: 'u-single', messageId: randomUUID(), type: 'track' };
      const res = await segment(`/v1/${type}`, body);
      expect(res.body).toMatchObject({ success: true, accepted: 1 });
      ids.push(body.messageId);
    }
    const alias = { userId: 'u-single', previousId: 'a-single', messageId: randomUUID() };
    expect((await segment('/v1/alias', alias)).body.accepted).toBe(1);
    const imported = { batch: [track({ messageId: randomUUID() })] };
    expect((await segment('/v1/import', imported)).body.accepted).toBe(1);
    ids.push(alias.messageId, imported.batch[0]?.messageId as string);
    expect((await rowsOf(ids)).map((r) => r.type)).toEqual([
      'identify',
      'page',
      'screen',
      'group',
      'alias',
      'Order Completed',
    ]);
  });
});

describe('idempotency across SDK retries', () => {
  it('a non-UUID messageId re-sent is one row; a whole batch re-sent stores nothing twice', async () => {
    const one = track();
    expect((await segment('/v1/track', one)).body).toMatchObject({ accepted: 1, duplicates: 0 });
    expect((await segment('/v1/track', one)).body).toMatchObject({ accepted: 0, duplicates: 1 });

    const batch = Array.from({ length: 20 }, () => track());
    const body = { batch, sentAt: new Date().toISOString() };
    expect((await segment('/v1/batch', body)).body).toMatchObject({ accepted: 20, duplicates: 0 });
    // The retry after a timeout: the same calls, a later sentAt, gzipped this time.
    const retry = await segment('/v1/batch', { ...body, sentAt: new Date().toISOString() }, { gzip: true });
    expect(retry.body).toMatchObject({ accepted: 0, duplicates: 20 });

    const ids = [one, ...batch].map((c) => idOf(c));
    await waitUntilStored(stack.env.pool, ids);
    const { rows } = await stack.env.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM events WHERE id = ANY($1::uuid[])',
      [ids],
    );
    expect(rows[0]?.n).toBe(21);
  });
});

describe('refusals and limits', () => {
  it('a partial batch: 200, the invalid calls refused on their own, the rest stored', async () => {
    const good = [track(), track()];
    const res = await segment('/v1/batch', {
      batch: [good[0], { type: 'track', properties: {} }, good[1], { type: 'purchase' }, 'not a call'],
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ success: true, accepted: 2, ids: good.map((c) => idOf(c)) });
    expect(res.body.rejected.map((r: { index: number; code: string }) => [r.index, r.code])).toEqual([
      [1, 'invalid_event'],
      [3, 'invalid_event'],
      [4, 'invalid_event'],
    ]);
    expect(res.body.rejected[0].details[0]).toMatchObject({ path: 'event', code: 'required' });
    await rowsOf(good.map((c) => idOf(c)));
  });

  it('a call over 32 KB is refused inside the 200; one under it is stored', async () => {
    const big = track({ properties: { pad: 'x'.repeat(33 * 1024) } });
    const small = track({ properties: { pad: 'x'.repeat(30 * 1024) } });
    const res = await segment('/v1/batch', { batch: [big, small] });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ accepted: 1, ids: [idOf(small)] });
    expect(res.body.rejected).toEqual([expect.objectContaining({ index: 0, code: 'event_too_large' })]);
    const single = await segment('/v1/track', big);
    expect(single.status).toBe(200);
    expect(single.body.rejected).toEqual([expect.objectContaining({ index: 0, code: 'event_too_large' })]);
    const metrics = await call(stack.url, '/metrics', { key: null });
    expect(metrics.body).toMatch(/tributary_events_rejected_total\{reason="event_too_large"\} [2-9]/);
  });

  it('a call whose metadata fits but whose event is over 32 KB as stored is refused too', async () => {
    // The padding that puts the mapped metadata just under the native 32 KiB: the event it
    // becomes (id, service, times and the rest added) is then over 32 KB.
    const mapped = (n: number) => {
      const c = track({ properties: { pad: 'x'.repeat(n) } });
      const m = mapSegmentCall(c, { service: SERVICE, receivedAt: Date.now() });
      if (!m.ok) throw new Error(m.message);
      return { c, metadataBytes: Buffer.byteLength(JSON.stringify(m.input.metadata)) };
    };
    let n = 32 * 1024 - 600;
    while (mapped(n + 1).metadataBytes <= 32 * 1024) n++;
    const { c: edge, metadataBytes } = mapped(n);
    expect(metadataBytes).toBeLessThanOrEqual(32 * 1024);
    const res = await segment('/v1/batch', { batch: [edge] });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ accepted: 0, ids: [] });
    expect(res.body.rejected).toEqual([expect.objectContaining({ index: 0, code: 'event_too_large' })]);
  });

  it('2500 calls pass, 2501 are refused; a request over 500 KB is 413, gzipped or not', async () => {
    const tiny = () => ({ type: 'track', event: 'E', messageId: randomUUID() });
    const full = await segment('/v1/batch', { batch: Array.from({ length: 2500 }, tiny) });
    expect(full.status).toBe(200);
    expect(full.body.accepted).toBe(2500);
    const over = await segment('/v1/batch', { batch: Array.from({ length: 2501 }, tiny) });
    expect(over.status).toBe(413);
    expect(over.body.error.code).toBe('batch_too_large');

    const pad = 'y'.repeat(20 * 1024);
    const large = { batch: Array.from({ length: 26 }, () => track({ properties: { pad } })) };
    expect(JSON.stringify(large).length).toBeGreaterThan(500 * 1024);
    for (const gzip of [false, true]) {
      const res = await segment('/v1/batch', large, { gzip });
      expect(res.status).toBe(413);
      expect(res.body.error.code).toBe('payload_too_large');
    }
    const fits = { batch: large.batch.slice(0, 24) };
    expect((await segment('/v1/batch', fits)).body.accepted).toBe(24);
  });

  it('not JSON or not an object: 400; another content type: 415', async () => {
    const notJson = await segment('/v1/track', undefined, { raw: '{"type":' });
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.code).toBe('invalid_json');
    const array = await segment('/v1/batch', [track()]);
    expect(array.status).toBe(400);
    const noBatch = await segment('/v1/batch', { calls: [] });
    expect(noBatch.body.error.code).toBe('invalid_batch');
    const form = await segment('/v1/track', undefined, {
      raw: '<track/>',
      contentType: 'application/xml',
    });
    expect(form.status).toBe(415);
  });

  it('429 carries Retry-After, and one call is one event against the key’s limit', async () => {
    const limited = await keyFor({ services: [SERVICE], rateLimitPerMinute: 3 });
    const send = (n: number) =>
      call(stack.url, '/v1/batch', {
        key: null,
        body: { batch: Array.from({ length: n }, () => track()) },
        headers: basic(limited),
      });
    expect((await send(3)).status).toBe(200);
    const refused = await send(1);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('rate_limited');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});

describe('bodies', () => {
  it('gzip, text/plain as sendBeacon sends it (key in the body), and gzip labelled form-urlencoded as RudderStack’s Node SDK sends it', async () => {
    const zipped = track();
    const res = await call(stack.url, '/v1/batch', {
      key: null,
      raw: gzipSync(JSON.stringify({ batch: [zipped] })),
      headers: { ...basic(writeKey), 'content-encoding': 'gzip' },
    });
    expect(res.body).toMatchObject({ success: true, accepted: 1 });
    const beacon = track();
    const plain = await call(stack.url, '/v1/track', {
      key: null,
      raw: JSON.stringify({ ...beacon, writeKey }),
      contentType: 'text/plain;charset=UTF-8',
    });
    expect(plain.body).toMatchObject({ success: true, accepted: 1 });
    const rudder = track();
    const labelled = await call(stack.url, '/v1/batch', {
      key: null,
      raw: gzipSync(JSON.stringify({ batch: [rudder], sentAt: new Date().toISOString() })),
      contentType: 'application/x-www-form-urlencoded',
      headers: { ...basic(writeKey), 'content-encoding': 'gzip' },
    });
    expect(labelled.body).toMatchObject({ success: true, accepted: 1 });
    const rows = await rowsOf([idOf(zipped), idOf(beacon), idOf(rudder)]);
    expect(rows.map((r) => r.type)).toEqual(['Order Completed', 'Order Completed', 'Order Completed']);
  });
});

describe('clock skew', () => {
  it('a device clock an hour fast: stored at receive time, not refused', async () => {
    const hourAhead = Date.now() + 3_600_000;
    const skewed = track({ timestamp: new Date(hourAhead - 2_000).toISOString() });
    const before = Date.now();
    const res = await segment('/v1/batch', { batch: [skewed], sentAt: new Date(hourAhead).toISOString() });
    const after = Date.now();
    expect(res.body).toMatchObject({ accepted: 1, rejected: [] });
    const [row] = await rowsOf([idOf(skewed)]);
    const at = row?.occurred_at.getTime() ?? 0;
    expect(at).toBeGreaterThanOrEqual(before - 2_000 - 50);
    expect(at).toBeLessThanOrEqual(after - 2_000 + 50);
    // The call as sent stays in metadata.
    expect(row?.metadata).toMatchObject({ timestamp: skewed.timestamp });

    // Without sentAt there is nothing to correct by: an hour ahead is refused as native events are.
    const uncorrected = await segment('/v1/track', track({ timestamp: new Date(hourAhead).toISOString() }));
    expect(uncorrected.body.rejected).toEqual([
      expect.objectContaining({
        code: 'invalid_event',
        details: [expect.objectContaining({ code: 'out_of_range' })],
      }),
    ]);
  });
});

describe('CORS (CORS_ORIGINS)', () => {
  const preflight = (path: string, origin: string) =>
    fetch(`${stack.url}${path}`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });

  it('answers a listed origin’s preflight on every ingest route, before authentication, never with credentials', async () => {
    for (const path of ['/v1/batch', '/v1/track', '/v1/page', '/v1/events', '/v1/events/batch']) {
      const res = await preflight(path, ORIGIN);
      expect([path, res.status]).toEqual([path, 204]);
      expect(res.headers.get('access-control-allow-origin')).toBe(ORIGIN);
      expect(res.headers.get('access-control-allow-methods')).toBe('POST');
      expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
      expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('content-encoding');
      expect(Number(res.headers.get('access-control-max-age'))).toBeGreaterThan(0);
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    }
  });

  it('gives an unlisted origin, and routes that do not ingest, no CORS header at all', async () => {
    const unlisted = await preflight('/v1/batch', 'https://evil.example');
    expect(unlisted.headers.get('access-control-allow-origin')).toBeNull();
    expect(unlisted.status).toBe(401);
    const notIngest = await preflight('/v1/admin/keys', ORIGIN);
    expect(notIngest.headers.get('access-control-allow-origin')).toBeNull();
    const post = await segment('/v1/track', track(), { headers: { origin: 'https://evil.example' } });
    expect(post.status).toBe(200);
    expect(post.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('puts the origin on the answers to a listed origin, refusals included', async () => {
    const ok = await segment('/v1/track', track(), { headers: { origin: ORIGIN } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(ok.headers.get('access-control-allow-credentials')).toBeNull();
    expect(ok.headers.get('access-control-expose-headers')).toContain('Retry-After');
    const refused = await call(stack.url, '/v1/batch', {
      key: null,
      body: { batch: [track()], writeKey: 'trb_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' },
      headers: { origin: ORIGIN },
    });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('access-control-allow-origin')).toBe(ORIGIN);
  });
});
