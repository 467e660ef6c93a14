import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, event, type Stack, startStack } from '../helpers/stack.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

const post = (body: unknown, opts: Parameters<typeof call>[2] = {}) =>
  call(stack.url, '/v1/events', { body, ...opts });

async function expectInvalid(body: unknown, path: string, code: string) {
  const res = await post(body);
  expect(res.status, JSON.stringify(res.body)).toBe(400);
  expect(res.body.error.code).toBe('invalid_event');
  expect(res.body.error.details).toEqual(expect.arrayContaining([expect.objectContaining({ path, code })]));
  return res;
}

describe('POST /v1/events', () => {
  it('accepts a valid event with 202 and its id', async () => {
    const e = event({ userId: 'u-1', message: 'hi', metadata: { plan: 'pro', n: 3 } });
    const res = await post(e);
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ id: e.id, status: 'accepted' });
  });

  it('generates an id when none is given', async () => {
    const res = await post({ service: 'web', type: 'page.view' });
    expect(res.status).toBe(202);
    expect(res.body.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers a retry of the same id with "duplicate", even without a timestamp', async () => {
    const e = event();
    expect((await post(e)).body.status).toBe('accepted');
    const again = await post(e);
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ id: e.id, status: 'duplicate' });
    expect((await post({ ...e, id: String(e.id).toUpperCase() })).body.status).toBe('duplicate');
  });

  it('refuses each invalid field with its own code', async () => {
    await expectInvalid({ type: 't' }, 'service', 'required');
    await expectInvalid({ service: 'x', type: 't', id: 'not-a-uuid' }, 'id', 'invalid_format');
    await expectInvalid({ service: '', type: 't' }, 'service', 'too_short');
    await expectInvalid({ service: 'a'.repeat(65), type: 't' }, 'service', 'too_long');
    await expectInvalid({ service: 'has space', type: 't' }, 'service', 'invalid_format');
    await expectInvalid({ service: 'x' }, 'type', 'required');
    await expectInvalid({ service: 'x', type: 't'.repeat(129) }, 'type', 'too_long');
    await expectInvalid({ service: 'x', type: 7 }, 'type', 'invalid_type');
    await expectInvalid({ service: 'x', type: 't', timestamp: 'yesterday' }, 'timestamp', 'invalid_format');
    await expectInvalid(
      { service: 'x', type: 't', timestamp: '2026-02-31T00:00:00Z' },
      'timestamp',
      'invalid_format',
    );
    const future = new Date(Date.now() + 10 * 60_000).toISOString();
    await expectInvalid({ service: 'x', type: 't', timestamp: future }, 'timestamp', 'out_of_range');
    const old = new Date(Date.now() - 31 * 86_400_000).toISOString();
    await expectInvalid({ service: 'x', type: 't', timestamp: old }, 'timestamp', 'out_of_range');
    await expectInvalid({ service: 'x', type: 't', userId: '' }, 'userId', 'too_short');
    await expectInvalid({ service: 'x', type: 't', userId: 'u'.repeat(257) }, 'userId', 'too_long');
    await expectInvalid({ service: 'x', type: 't', message: 'm'.repeat(1001) }, 'message', 'too_long');
    await expectInvalid({ service: 'x', type: 't', metadata: [1, 2] }, 'metadata', 'invalid_type');
    await expectInvalid({ service: 'x', type: 't', metadata: 'str' }, 'metadata', 'invalid_type');
    await expectInvalid({ service: 'x', type: 't', extra: true }, 'extra', 'unknown_field');
  });

  it('accepts timestamps at the edges of the window and with offsets', async () => {
    const inFourMinutes = new Date(Date.now() + 4 * 60_000).toISOString();
    expect((await post(event({ timestamp: inFourMinutes }))).status).toBe(202);
    // One hour ago, written in +02:00 with microseconds.
    const local = new Date(Date.now() - 3_600_000 + 2 * 3_600_000).toISOString().slice(0, 19);
    const res = await post(event({ timestamp: `${local}.123456+02:00` }));
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  });

  it('refuses metadata that is too large, too deep, or has prototype keys', async () => {
    await expectInvalid(event({ metadata: { blob: 'x'.repeat(33 * 1024) } }), 'metadata', 'too_large');
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 17; i++) deep = { d: deep };
    await expectInvalid(event({ metadata: deep }), 'metadata.d.d.d.d.d.d.d.d.d.d.d.d.d.d.d.d', 'too_deep');
    let ok: Record<string, unknown> = {};
    for (let i = 0; i < 15; i++) ok = { d: ok };
    expect((await post(event({ metadata: ok }))).status).toBe(202);
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      const raw = `{"service":"x","type":"t","metadata":{"a":{"${key}":{"polluted":true}}}}`;
      const res = await call(stack.url, '/v1/events', { raw });
      expect(res.status).toBe(400);
      expect(res.body.error.details[0]).toMatchObject({ path: `metadata.a.${key}`, code: 'forbidden_key' });
    }
    const top = await call(stack.url, '/v1/events', {
      raw: '{"service":"x","type":"t","__proto__":{"a":1}}',
    });
    expect(top.status).toBe(400);
    expect(top.body.error.details[0]).toMatchObject({ path: '__proto__', code: 'unknown_field' });
  });

  it('refuses NUL characters and lone surrogates in any string', async () => {
    await expectInvalid(event({ type: 'a\u0000b' }), 'type', 'invalid_string');
    await expectInvalid(event({ message: 'bad \ud800 half' }), 'message', 'invalid_string');
    const raw = '{"service":"x","type":"t","metadata":{"k":"\\udc00"}}';
    const res = await call(stack.url, '/v1/events', { raw });
    expect(res.status).toBe(400);
    expect(res.body.error.details[0]).toMatchObject({ path: 'metadata.k', code: 'invalid_string' });
    await expectInvalid(event({ metadata: { 'k\u0000': 1 } }), 'metadata', 'invalid_string');
    expect((await post(event({ message: 'emoji 🎉 ok' }))).status).toBe(202);
  });

  it('refuses numbers that JSON cannot carry exactly', async () => {
    for (const n of ['1e400', '-1e400', '9007199254740993']) {
      const res = await call(stack.url, '/v1/events', {
        raw: `{"service":"x","type":"t","metadata":{"n":${n}}}`,
      });
      expect(res.status).toBe(400);
      expect(res.body.error.details[0]).toMatchObject({ path: 'metadata.n', code: 'invalid_number' });
    }
  });

  it('answers malformed JSON with invalid_json', async () => {
    const res = await call(stack.url, '/v1/events', { raw: '{"service":' });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_json');
    const notObject = await call(stack.url, '/v1/events', { raw: '[1,2]' });
    expect(notObject.status).toBe(400);
    expect(notObject.body.error.code).toBe('invalid_event');
  });
});

describe('auth', () => {
  it('401 without a key or with an unknown one, 403 without the scope', async () => {
    const none = await post(event(), { key: null });
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('unauthorized');
    const unknown = await post(event(), { key: 'trb_not-a-real-key' });
    expect(unknown.status).toBe(401);

    const created = await call(stack.url, '/v1/admin/keys', { body: { name: 'reader', scopes: ['read'] } });
    expect(created.status).toBe(201);
    const forbidden = await post(event(), { key: created.body.key });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error.code).toBe('forbidden');

    const ingest = await call(stack.url, '/v1/admin/keys', { body: { name: 'svc', scopes: ['ingest'] } });
    const viaBearer = await post(event(), {
      key: null,
      headers: { authorization: `Bearer ${ingest.body.key}` },
    });
    expect(viaBearer.status).toBe(202);
  });
});

describe('bodies and limits', () => {
  it('415 for another content type or content encoding', async () => {
    const text = await call(stack.url, '/v1/events', {
      raw: JSON.stringify(event()),
      contentType: 'text/plain',
    });
    expect(text.status).toBe(415);
    expect(text.body.error.code).toBe('unsupported_media_type');
    const missing = await call(stack.url, '/v1/events', { raw: JSON.stringify(event()), contentType: null });
    expect(missing.status).toBe(415);
    const br = await call(stack.url, '/v1/events', {
      raw: JSON.stringify(event()),
      headers: { 'content-encoding': 'br' },
    });
    expect(br.status).toBe(415);
  });

  it('accepts gzip bodies', async () => {
    const e = event();
    const res = await post(e, { gzip: true });
    expect(res.status).toBe(202);
    expect(res.body.id).toBe(e.id);
  });

  it('413 for a gzip bomb, before inflating it whole', async () => {
    const bomb = JSON.stringify({ service: 'x', type: 't', message: ' '.repeat(50 * 1024 * 1024) });
    const res = await call(stack.url, '/v1/events', { raw: bomb, gzip: true });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('payload_too_large');
  });

  it('413 for a body over the limit and for a declared Content-Length over it', async () => {
    const big = await call(stack.url, '/v1/events', { raw: JSON.stringify({ pad: 'x'.repeat(1_100_000) }) });
    expect(big.status).toBe(413);
    // Only headers are sent: the 413 must come without the server waiting for 5 MB.
    const reply = await rawRequest(
      stack.url,
      'POST /v1/events HTTP/1.1\r\nHost: x\r\nx-api-key: test-admin-key-0123456789abcdef\r\n' +
        'Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n',
    );
    expect(reply).toMatch(/^HTTP\/1\.1 413/);
    expect(reply).toContain('payload_too_large');
  });

  it('echoes x-request-id, or makes one', async () => {
    const mine = await post(event(), { headers: { 'x-request-id': 'req-abc.123' } });
    expect(mine.headers.get('x-request-id')).toBe('req-abc.123');
    const made = await post(event());
    expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const err = await post({}, { headers: { 'x-request-id': 'req-err' } });
    expect(err.headers.get('x-request-id')).toBe('req-err');
    expect(err.body.error.requestId).toBe('req-err');
  });

  it('answers unknown routes with the error shape', async () => {
    const res = await call(stack.url, '/v1/nope');
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
  });
});

/** Writes raw bytes to the server and returns what it answers first (within 5 s). */
function rawRequest(baseUrl: string, text: string): Promise<string> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(text));
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(data);
    }, 5_000);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (data.includes('\r\n\r\n') && data.includes('}')) {
        clearTimeout(timer);
        socket.destroy();
        resolve(data);
      }
    });
    socket.on('error', reject);
  });
}
