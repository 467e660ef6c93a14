import { randomUUID } from 'node:crypto';
import { describe, expect } from 'vitest';
import { bufferKeys } from '../../src/buffer/keys.ts';
import { eventIdOf } from '../../src/events/segment.ts';
import { stackTest } from '../helpers/fixtures.ts';
import { documentedFetch } from '../helpers/openapi.ts';
import { type ApiResponse, call, event, type RequestOptions, type Stack, waitFor } from '../helpers/stack.ts';
import { waitUntilStored } from '../helpers/stored-once.ts';

/**
 * `POST /v1/events/validate` (ARCHITECTURE §13): a dry run of ingest. It answers, per event,
 * what `POST /v1/events/batch` or Segment's `/v1/batch` would answer, with the event as it
 * would be stored, and writes nothing: no stream entry, no dedupe member, no key load, no
 * ingest metric, no row; it spends one request of a rate limit, and backpressure does not
 * refuse it.
 */
const A = 'val-a';
const B = 'val-b';
const OPTED = 'val-opted-out';
const ORIGIN = 'https://shop.example';
const test = stackTest({
  workers: 1,
  // A small buffer, so the last test can fill it; a share per key, so key load is counted.
  env: { CORS_ORIGINS: ORIGIN, BUFFER_MAX_EVENTS: '50', BUFFER_MAX_SHARE_PER_KEY: '1' },
});

/** Keys: `ingest` bound to A (Segment calls go to A), the same with a limit, unbound, `read`. */
let bound: { key: string; id: string };
let limited: string;
let unbound: string;
let reader: string;

test.beforeAll(async ({ stack }) => {
  const create = async (body: Record<string, unknown>) => {
    const res = await call(stack.url, '/v1/admin/keys', { body: { name: 'validate', ...body } });
    expect(res.status).toBe(201);
    return res.body as { key: string; id: string };
  };
  bound = await create({ scopes: ['ingest'], services: [A] });
  limited = (await create({ scopes: ['ingest'], services: [A], rateLimitPerMinute: 10 })).key;
  unbound = (await create({ scopes: ['ingest'] })).key;
  reader = (await create({ scopes: ['read'], services: [A] })).key;
  expect((await call(stack.url, `/v1/users/${OPTED}/opt-out`, { method: 'PUT' })).status).toBe(200);
});

const post = (stack: Stack, path: string, opts: RequestOptions) =>
  call(stack.url, path, { key: bound.key, ...opts });
const validate = (stack: Stack, opts: RequestOptions) => post(stack, '/v1/events/validate', opts);

/** The answer without what only a dry run adds: what the ingest route must answer. */
function asIngest(res: ApiResponse): Record<string, unknown> {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  const { dryRun, results, ...answer } = res.body;
  expect(dryRun).toBe(true);
  expect(results.map((r: { index: number }) => r.index)).toEqual([...results.keys()]);
  return answer;
}

/**
 * Everything ingest changes in Redis and in the API's ingest metrics. The key load only on
 * request: while a worker runs, its acknowledgements lower it at any moment.
 */
async function sideEffects(stack: Stack, opts: { keyLoad?: boolean } = {}) {
  const redis = stack.env.redis;
  const keys = bufferKeys(stack.env.prefix, 8);
  let entriesAdded = 0;
  for (const stream of keys.streams) {
    if (!(await redis.exists(stream))) continue;
    const info = (await redis.xinfo('STREAM', stream)) as unknown[];
    entriesAdded += Number(info[info.indexOf('entries-added') + 1]);
  }
  const dedupe: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${stack.env.prefix}:dedupe:*`, 'COUNT', 1000);
    cursor = next;
    for (const key of found) {
      for (const m of await redis.smembersBuffer(key)) dedupe.push(`${key}/${m.toString('hex')}`);
    }
  } while (cursor !== '0');
  const scraped = await documentedFetch(`${stack.url}/metrics`).then((r) => r.text());
  const counters = scraped
    .split('\n')
    .filter((l) => /^tributary_events_(received|accepted|duplicate|rejected|skipped)_total/.test(l));
  const validated = Number(/^tributary_events_validated_total (\d+)/m.exec(scraped)?.[1]);
  return {
    entriesAdded,
    dedupe: dedupe.sort(),
    keyLoad: opts.keyLoad ? await redis.hgetall(keys.keyLoad) : undefined,
    counters,
    validated,
  };
}

/** Sends `body` to the ingest route for real and checks the answer is the dry run's. */
async function ingestMatches(stack: Stack, path: string, opts: RequestOptions, dryRun: ApiResponse) {
  const real = await post(stack, path, opts);
  expect(real.body).toEqual(asIngest(dryRun));
  return real;
}

describe('native batches', () => {
  test('JSON: per-event outcomes, the stored event, and nothing written anywhere', async ({ stack }) => {
    const seen = event({ service: A });
    expect((await post(stack, '/v1/events/batch', { body: { events: [seen] } })).body.accepted).toBe(1);
    await waitUntilStored(stack.env.pool, [seen.id as string]);

    const a = event({ service: A });
    const later = event({ service: A, userId: 'val-user-7', metadata: { plan: 'pro' } });
    const events = [
      a,
      { service: A, type: 't', metadata: { x: { constructor: 1 } } },
      { service: A, type: '', timestamp: 'yesterday' },
      event({ service: B }),
      event({ service: A, userId: OPTED }),
      seen,
      a,
      later,
    ];
    const before = await sideEffects(stack);
    const res = await validate(stack, { body: { events } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      accepted: 2,
      duplicates: 2,
      skipped: 1,
      ids: [a.id, seen.id, a.id, later.id],
      dryRun: true,
    });
    const event0 = res.body.results[0].event;
    expect(res.body.results).toEqual([
      {
        index: 0,
        status: 'accepted',
        id: a.id,
        event: {
          id: a.id,
          service: A,
          type: 'order.placed',
          timestamp: event0.timestamp,
          receivedAt: event0.timestamp,
          keyId: bound.id,
        },
      },
      {
        index: 1,
        status: 'rejected',
        code: 'invalid_event',
        message: 'the event is invalid',
        details: [{ path: 'metadata.x.constructor', code: 'forbidden_key', message: expect.any(String) }],
      },
      {
        index: 2,
        status: 'rejected',
        code: 'invalid_event',
        message: 'the event is invalid',
        details: [
          { path: 'type', code: 'too_short', message: expect.any(String) },
          { path: 'timestamp', code: 'invalid_format', message: expect.any(String) },
        ],
      },
      expect.objectContaining({ index: 3, status: 'rejected', code: 'service_not_allowed' }),
      expect.objectContaining({ index: 4, status: 'skipped', reason: 'user_opt_out', id: events[4]?.id }),
      expect.objectContaining({ index: 5, status: 'duplicate', id: seen.id }),
      expect.objectContaining({ index: 6, status: 'duplicate', id: a.id }),
      expect.objectContaining({
        index: 7,
        status: 'accepted',
        event: expect.objectContaining({ userId: 'val-user-7', metadata: { plan: 'pro' } }),
      }),
    ]);
    expect(Date.now() - Date.parse(event0.timestamp)).toBeLessThan(60_000);

    const after = await sideEffects(stack);
    expect(after).toEqual({ ...before, validated: before.validated + events.length });

    // The worker stores each partition in order: once events sent after the dry run with the
    // same routing keys are rows, anything the dry run had buffered would be too.
    const markers = [event({ service: A }), event({ service: A, userId: 'val-user-7' })];
    expect((await post(stack, '/v1/events/batch', { body: { events: markers } })).body.accepted).toBe(2);
    await waitUntilStored(
      stack.env.pool,
      markers.map((m) => m.id as string),
    );
    const rows = await stack.env.pool.query('SELECT id FROM events WHERE id = ANY($1::uuid[])', [
      [a.id, later.id],
    ]);
    expect(rows.rows).toEqual([]);

    // Ingest now gives the same answer: the ids the dry run saw are still new to the dedupe window.
    await ingestMatches(stack, '/v1/events/batch', { body: { events } }, res);
    await waitUntilStored(stack.env.pool, [a.id as string, later.id as string]);
  });

  test('NDJSON, with a broken line, and an event without an id', async ({ stack }) => {
    const a = event({ service: A });
    const raw = [JSON.stringify(a), '{broken', JSON.stringify({ service: A }), '', JSON.stringify(a)].join(
      '\n',
    );
    const opts = { raw, contentType: 'application/x-ndjson' };
    const res = await validate(stack, opts);
    expect(res.body.results).toEqual([
      expect.objectContaining({ index: 0, status: 'accepted', id: a.id }),
      { index: 1, status: 'rejected', code: 'invalid_json', message: 'line is not valid JSON' },
      expect.objectContaining({
        index: 2,
        status: 'rejected',
        code: 'invalid_event',
        details: [expect.objectContaining({ path: 'type', code: 'required' })],
      }),
      expect.objectContaining({ index: 3, status: 'duplicate', id: a.id }),
    ]);
    await ingestMatches(stack, '/v1/events/batch', opts, res);

    // An id the request leaves out is made up for the answer only; ingest makes its own.
    const anonymous = { service: A, type: 'no.id' };
    const once = await validate(stack, { body: { events: [anonymous] } });
    const twice = await validate(stack, { body: { events: [anonymous] } });
    expect(once.body.results[0]).toMatchObject({ status: 'accepted', event: { type: 'no.id' } });
    expect(once.body.ids[0]).not.toBe(twice.body.ids[0]);
  });
});

describe('Segment bodies', () => {
  const call0 = (extra: Record<string, unknown> = {}) => ({
    type: 'track',
    event: 'Order Completed',
    messageId: `m-${randomUUID()}`,
    anonymousId: 'val-anon',
    properties: { total: 12.5 },
    ...extra,
  });

  test('a batch: mapping, clock skew, 32 KB, opt-out, duplicates, and /v1/batch answers the same', async ({
    stack,
  }) => {
    const seen = call0();
    expect((await post(stack, '/v1/batch', { body: { batch: [seen] } })).body.accepted).toBe(1);
    // The client's clock is years behind: its timestamp is a minute before its sentAt.
    const clientTime = '2020-01-01T00:00:00.000Z';
    const first = call0({ timestamp: clientTime });
    const page = {
      type: 'page',
      name: 'Home',
      userId: 'val-seg-user',
      messageId: randomUUID().toUpperCase(),
    };
    const calls = [
      first,
      { type: 'track', messageId: `m-${randomUUID()}` },
      { type: 'identify', userId: OPTED, messageId: `m-${randomUUID()}` },
      call0({ properties: { pad: 'x'.repeat(40_000) } }),
      seen,
      first,
      page,
    ];
    const body = {
      batch: calls,
      sentAt: '2020-01-01T00:01:00.000Z',
      context: { library: { name: 'analytics-node' } },
    };
    const before = await sideEffects(stack);
    const res = await validate(stack, { body });
    expect(res.body).toMatchObject({ success: true, accepted: 2, duplicates: 2, skipped: 1, dryRun: true });
    const [r0, r1, r2, r3, r4, r5, r6] = res.body.results;
    expect(r0).toEqual({
      index: 0,
      status: 'accepted',
      id: eventIdOf(A, first.messageId),
      event: {
        id: eventIdOf(A, first.messageId),
        service: A,
        type: 'Order Completed',
        anonymousId: 'val-anon',
        keyId: bound.id,
        timestamp: r0.event.timestamp,
        receivedAt: r0.event.receivedAt,
        metadata: {
          segmentType: 'track',
          messageId: first.messageId,
          timestamp: clientTime,
          properties: { total: 12.5 },
          context: { library: { name: 'analytics-node' } },
          sentAt: body.sentAt,
        },
      },
    });
    expect(Date.parse(r0.event.receivedAt) - Date.parse(r0.event.timestamp)).toBe(60_000);
    expect(r1).toMatchObject({
      status: 'rejected',
      code: 'invalid_event',
      details: [{ path: 'event', code: 'required' }],
    });
    expect(r2).toMatchObject({ status: 'skipped', reason: 'user_opt_out', event: { type: 'identify' } });
    expect(r3).toMatchObject({ status: 'rejected', code: 'event_too_large' });
    expect(r4).toMatchObject({ status: 'duplicate', id: eventIdOf(A, seen.messageId) });
    expect(r5).toMatchObject({ status: 'duplicate', id: r0.id });
    expect(r6).toMatchObject({
      status: 'accepted',
      id: page.messageId.toLowerCase(),
      event: { type: 'page', userId: 'val-seg-user', metadata: { segmentType: 'page', name: 'Home' } },
    });
    expect(await sideEffects(stack)).toEqual({ ...before, validated: before.validated + calls.length });

    await ingestMatches(stack, '/v1/batch', { body }, res);
  });

  test('one call, as sendBeacon sends it (text/plain, gzip), answers as its own route', async ({ stack }) => {
    const identify = {
      type: 'identify',
      userId: 'val-beacon',
      traits: { plan: 'pro' },
      messageId: randomUUID(),
    };
    const opts = { body: identify, contentType: 'text/plain', gzip: true };
    const res = await validate(stack, opts);
    expect(res.body.results).toEqual([
      expect.objectContaining({
        status: 'accepted',
        event: expect.objectContaining({ type: 'identify', userId: 'val-beacon', service: A }),
      }),
    ]);
    await ingestMatches(stack, '/v1/identify', opts, res);
  });
});

describe('refusals of the whole request', () => {
  test('body-level errors are those the ingest route gives for the same body', async ({ stack }) => {
    const many = (n: number) => Array.from({ length: n }, () => ({ service: A, type: 't' }));
    const cases: [string, RequestOptions, string, number, string][] = [
      ['csv', { raw: 'a,b', contentType: 'text/csv' }, '/v1/events/batch', 415, 'unsupported_media_type'],
      [
        'native under text/plain',
        { body: { events: many(1) }, contentType: 'text/plain' },
        '/v1/events/batch',
        415,
        'unsupported_media_type',
      ],
      ['not JSON', { raw: '{nope' }, '/v1/events/batch', 400, 'invalid_json'],
      ['empty', { body: { events: [] } }, '/v1/events/batch', 400, 'invalid_batch'],
      ['extra field', { body: { events: many(1), more: 1 } }, '/v1/events/batch', 400, 'invalid_batch'],
      ['1001 events', { body: { events: many(1001) } }, '/v1/events/batch', 413, 'batch_too_large'],
      [
        '1001 lines',
        {
          raw: many(1001)
            .map((e) => JSON.stringify(e))
            .join('\n'),
          contentType: 'application/x-ndjson',
        },
        '/v1/events/batch',
        413,
        'batch_too_large',
      ],
      [
        'over MAX_BODY_BYTES',
        { raw: 'x'.repeat(1_100_000), contentType: 'application/x-ndjson' },
        '/v1/events/batch',
        413,
        'payload_too_large',
      ],
      ['batch not an array', { body: { batch: {} } }, '/v1/batch', 400, 'invalid_batch'],
      [
        '2501 calls',
        { body: { batch: Array.from({ length: 2501 }, () => ({ type: 'identify', userId: 'u' })) } },
        '/v1/batch',
        413,
        'batch_too_large',
      ],
      [
        'Segment body over 500 KB',
        { body: { batch: [{ type: 'identify', userId: 'u', traits: { pad: 'x'.repeat(600_000) } }] } },
        '/v1/batch',
        413,
        'payload_too_large',
      ],
    ];
    for (const [name, opts, path, status, code] of cases) {
      const dry = await validate(stack, opts);
      const real = await post(stack, path, opts);
      expect([name, dry.status, dry.body.error?.code]).toEqual([name, status, code]);
      expect([name, real.status, real.body.error?.code]).toEqual([name, status, code]);
    }
    // Neither shape: refused, naming the shapes taken.
    const neither = await validate(stack, { body: { type: 'order.placed', service: A } });
    expect(neither.status).toBe(400);
    expect(neither.body.error).toMatchObject({
      code: 'invalid_batch',
      message: expect.stringContaining('batch'),
    });
    // A native body is held to MAX_BODY_BYTES (1 MiB), not to Segment's 500 KB.
    const large = many(600).map((e) => ({ ...e, metadata: { pad: 'x'.repeat(1_000) } }));
    expect((await validate(stack, { body: { events: large } })).body.accepted).toBe(600);
  });

  test('scope: 401 without a key, 403 without ingest, 403 service_required for a Segment body and an unbound key', async ({
    stack,
  }) => {
    const native = { body: { events: [event({ service: A })] } };
    expect((await validate(stack, { ...native, key: null })).status).toBe(401);
    const forbidden = await validate(stack, { ...native, key: reader });
    expect([forbidden.status, forbidden.body.error.code]).toEqual([403, 'forbidden']);
    const segment = { body: { batch: [{ type: 'identify', userId: 'u' }] }, key: unbound };
    const unboundSegment = await validate(stack, segment);
    expect([unboundSegment.status, unboundSegment.body.error.code]).toEqual([403, 'service_required']);
    expect((await post(stack, '/v1/batch', segment)).body.error.code).toBe('service_required');
    expect((await validate(stack, { ...native, key: unbound })).body.accepted).toBe(1);
  });
});

describe('what a dry run costs', () => {
  test('one request of the rate limit, whatever the events, where ingest spends one per event', async ({
    stack,
  }) => {
    const body = { events: Array.from({ length: 20 }, () => event({ service: A })) };
    const first = await validate(stack, { body, key: limited });
    expect(first.body.accepted).toBe(20);
    expect(first.headers.get('ratelimit-limit')).toBe('10');
    expect(first.headers.get('ratelimit-remaining')).toBe('9');
    const second = await validate(stack, { body, key: limited });
    expect(Number(second.headers.get('ratelimit-remaining'))).toBeLessThan(9);
    const ingest = await post(stack, '/v1/events/batch', { body, key: limited });
    expect([ingest.status, ingest.body.error.code]).toEqual([413, 'batch_too_large']);
  });

  test('CORS like the ingest routes', async ({ stack }) => {
    const preflight = await fetch(`${stack.url}/v1/events/validate`, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    const res = await validate(stack, {
      body: { events: [event({ service: A })] },
      headers: { origin: ORIGIN },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(ORIGIN);
  });

  test('not refused while the buffer is full, and leaves the key load alone', async ({ stack }) => {
    await stack.workers[0]?.stop();
    const fill = { events: Array.from({ length: 60 }, () => event({ service: A })) };
    expect((await post(stack, '/v1/events/batch', { body: fill })).body.accepted).toBe(60);
    await waitFor(
      async () =>
        (await post(stack, '/v1/events/batch', { body: { events: [event({ service: A })] } })).status === 429,
      10_000,
      'backpressure',
    );
    const before = await sideEffects(stack, { keyLoad: true });
    expect(Number(before.keyLoad?.[bound.id])).toBeGreaterThanOrEqual(60);
    const body = { events: Array.from({ length: 10 }, () => event({ service: A })) };
    const res = await validate(stack, { body });
    expect(res.body).toMatchObject({ accepted: 10, dryRun: true });
    expect(await sideEffects(stack, { keyLoad: true })).toEqual({
      ...before,
      validated: before.validated + 10,
    });
    const refused = await post(stack, '/v1/events/batch', { body });
    expect([refused.status, refused.body.error.code]).toEqual([429, 'backpressure']);
  });
});
