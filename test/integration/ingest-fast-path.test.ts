import { randomUUID } from 'node:crypto';
import { describe, expect } from 'vitest';
import { stackTest } from '../helpers/fixtures.ts';
import { type ApiResponse, call, event, type RequestOptions, waitFor } from '../helpers/stack.ts';

// `POST /v1/events` and `/v1/events/batch` are served by the ingest fast path
// (src/http/fast-ingest.ts) straight from Node; the same path with a query string is left
// to the Hono app, which serves it with the same handlers. Every case is sent both ways and
// must get the same answer: status, body, headers (request id, security headers, rate-limit
// headers, Retry-After) and access-log line.
const test = stackTest({ env: { MAX_BODY_BYTES: '4096' } });

/** The headers a client sees, but the ones that differ by nature (date, length, request id). */
function headersOf(res: ApiResponse): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of res.headers) {
    if (['date', 'content-length', 'x-request-id', 'keep-alive', 'connection'].includes(name)) continue;
    out[name] = name === 'ratelimit-reset' || name === 'ratelimit-remaining' ? '(number)' : value;
  }
  return out;
}

/** The body with what differs by nature (ids, request ids) named instead of given. */
function shapeOf(body: unknown): unknown {
  return JSON.parse(JSON.stringify(body), (key, value) =>
    (key === 'id' || key === 'requestId') && typeof value === 'string'
      ? '(id)'
      : key === 'ids' && Array.isArray(value)
        ? value.map(() => '(id)')
        : value,
  );
}

async function both(
  url: string,
  path: '/v1/events' | '/v1/events/batch',
  opts: (via: 'fast' | 'app') => RequestOptions,
) {
  const fast = await call(url, path, opts('fast'));
  const app = await call(url, `${path}?via=app`, opts('app'));
  expect({ status: fast.status, body: shapeOf(fast.body), headers: headersOf(fast) }).toEqual({
    status: app.status,
    body: shapeOf(app.body),
    headers: headersOf(app),
  });
  return { fast, app };
}

async function newKey(url: string, body: Record<string, unknown>): Promise<string> {
  const res = await call(url, '/v1/admin/keys', { body: { name: `k-${randomUUID()}`, ...body } });
  expect(res.status).toBe(201);
  return res.body.key as string;
}

describe('ingest fast path: the same answers as the app', () => {
  test('accepted, duplicate, gzip, with a stored key and its rate-limit headers', async ({ stack }) => {
    const key = await newKey(stack.url, { scopes: ['ingest'], rateLimitPerMinute: 100_000 });
    const { fast, app } = await both(stack.url, '/v1/events', () => ({ key, body: event() }));
    expect(fast.status).toBe(202);
    expect(fast.body.status).toBe('accepted');
    expect(fast.headers.get('ratelimit-limit')).toBe('100000');
    expect(app.headers.get('x-content-type-options')).toBe('nosniff');
    const same = event();
    await call(stack.url, '/v1/events', { key, body: same });
    const dup = await both(stack.url, '/v1/events', () => ({ key, body: same }));
    expect(dup.fast.body.status).toBe('duplicate');
    const gz = await both(stack.url, '/v1/events', () => ({ key, body: event(), gzip: true }));
    expect(gz.fast.status).toBe(202);
  });

  test('batches: JSON with some events rejected, NDJSON with a bad line', async ({ stack }) => {
    const mixed = await both(stack.url, '/v1/events/batch', () => ({
      body: { events: [event(), { type: 'no.service' }, event()] },
    }));
    expect(mixed.fast.body).toMatchObject({ accepted: 2, rejected: [{ index: 1, code: 'invalid_event' }] });
    const ndjson = await both(stack.url, '/v1/events/batch', () => ({
      raw: `${JSON.stringify(event())}\n{nope\n${JSON.stringify(event())}\n`,
      contentType: 'application/x-ndjson',
    }));
    expect(ndjson.fast.body).toMatchObject({ accepted: 2, rejected: [{ index: 1, code: 'invalid_json' }] });
  });

  test('refusals: no key, unknown key, no ingest scope, another service', async ({ stack }) => {
    expect((await both(stack.url, '/v1/events', () => ({ key: null, body: event() }))).fast.status).toBe(401);
    const unknown = await both(stack.url, '/v1/events', () => ({ key: 'trb_nope', body: event() }));
    expect(unknown.fast.body.error.code).toBe('unauthorized');
    const reader = await newKey(stack.url, { scopes: ['read'] });
    const forbidden = await both(stack.url, '/v1/events', () => ({ key: reader, body: event() }));
    expect(forbidden.fast.body.error.code).toBe('forbidden');
    const bound = await newKey(stack.url, { scopes: ['ingest'], services: ['elsewhere'] });
    const other = await both(stack.url, '/v1/events', () => ({ key: bound, body: event() }));
    expect(other.fast.body.error.code).toBe('service_not_allowed');
  });

  test('bodies: wrong type, not JSON, invalid event, too large, bad encoding', async ({ stack }) => {
    const cases: [RequestOptions, number, string][] = [
      [{ raw: '{}', contentType: 'text/plain' }, 415, 'unsupported_media_type'],
      [{ raw: '{"id":' }, 400, 'invalid_json'],
      [{ body: { service: 'x' } }, 400, 'invalid_event'],
      [
        { raw: JSON.stringify({ ...event(), metadata: { pad: 'x'.repeat(5_000) } }) },
        413,
        'payload_too_large',
      ],
      [{ raw: '{}', headers: { 'content-encoding': 'br' } }, 415, 'unsupported_media_type'],
    ];
    for (const [opts, status, code] of cases) {
      const { fast } = await both(stack.url, '/v1/events', () => opts);
      expect([fast.status, fast.body.error.code]).toEqual([status, code]);
    }
  });

  test('rate limits: a batch over the whole limit, then a key out of events', async ({ stack }) => {
    const key = await newKey(stack.url, { scopes: ['ingest'], rateLimitPerMinute: 4 });
    const big = await both(stack.url, '/v1/events/batch', () => ({
      key,
      body: { events: Array.from({ length: 5 }, () => event()) },
    }));
    expect(big.fast.body.error.code).toBe('batch_too_large');
    await call(stack.url, '/v1/events/batch', {
      key,
      body: { events: [event(), event(), event(), event()] },
    });
    const out = await both(stack.url, '/v1/events', () => ({ key, body: event() }));
    expect(out.fast.status).toBe(429);
    expect(out.fast.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(out.fast.headers.get('ratelimit-remaining')).toBe('0');
  });

  test('the client’s request id, in the header, the error body and one access-log line each', async ({
    stack,
  }) => {
    const ids = { fast: `fast-${randomUUID()}`, app: `app-${randomUUID()}` };
    const { fast, app } = await both(stack.url, '/v1/events', (via) => ({
      raw: '{',
      headers: { 'x-request-id': ids[via] },
    }));
    expect(fast.headers.get('x-request-id')).toBe(ids.fast);
    expect(fast.body.error.requestId).toBe(ids.fast);
    expect(app.body.error.requestId).toBe(ids.app);
    const line = (id: string) =>
      waitFor(async () => stack.api.logs.find((l) => l.msg === 'request' && l.requestId === id));
    const [a, b] = [await line(ids.fast), await line(ids.app)];
    const fields = (l: Record<string, unknown>) => ({ method: l.method, route: l.route, status: l.status });
    expect(fields(a)).toEqual({ method: 'POST', route: '/v1/events', status: 400 });
    expect(fields(b)).toEqual(fields(a));
  });
});
