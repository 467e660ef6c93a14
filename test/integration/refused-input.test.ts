import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, event, type Stack, startStack } from '../helpers/stack.ts';

// ARCHITECTURE §11: input the database cannot hold, or that would parse to something else,
// is refused with 400 and a code: never a 500, never a silent change.

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(() => stack?.close());

const b64 = (text: string) => Buffer.from(text).toString('base64url');

async function expectRefused(path: string, code: string, opts: Parameters<typeof call>[2] = {}) {
  const res = await call(stack.url, path, opts);
  expect([path, res.status, res.body?.error?.code]).toEqual([path, 400, code]);
  return res;
}

describe('NUL in the URL', () => {
  it('is refused in any query parameter or path segment, before the database sees it', async () => {
    for (const name of ['type', 'userId', 'service']) {
      const res = await expectRefused(`/v1/events?${name}=a%00b`, 'invalid_query');
      expect(res.body.error.details).toEqual([
        expect.objectContaining({ path: name, code: 'nul_character' }),
      ]);
    }
    await expectRefused('/v1/admin/audit?keyId=%00', 'invalid_query');
    await expectRefused('/v1/admin/archives?cursor=%00', 'invalid_query');
    await expectRefused('/v1/users/a%00b/opt-out', 'invalid_request', { method: 'PUT' });
    await expectRefused(`/v1/admin/keys/${randomUUID()}%00`, 'invalid_request', { method: 'DELETE' });
  });
});

describe('dates', () => {
  it('must be RFC 3339 with a zone, in a range PostgreSQL holds', async () => {
    for (const date of [
      '+275760-09-13T00:00:00Z',
      '0000-01-01T00:00:00Z',
      '9999-12-31T23:59:59-01:00',
      '2026-02-31T00:00:00Z',
      '2026-01-01',
      'Tue, 01 Jan 2030 00:00:00 GMT',
    ]) {
      const q = encodeURIComponent(date);
      for (const path of [`/v1/events?from=${q}`, `/v1/events?to=${q}`, `/v1/admin/audit?from=${q}`]) {
        await expectRefused(path, 'invalid_query');
      }
    }
    const ok = await call(stack.url, `/v1/events?from=${encodeURIComponent('2026-01-01T00:00:00+02:00')}`);
    expect(ok.status).toBe(200);
  });
});

describe('cursors', () => {
  it('are taken only as handed out: impossible dates, other ids, extra fields and garbage are 400 invalid_cursor', async () => {
    const id = randomUUID();
    for (const cursor of [
      b64(`2026-13-45T99:99:99.999999Z|${id}`),
      b64(`0000-01-01T00:00:00.000000Z|${id}`),
      b64('2026-01-01T00:00:00.000000Z|not-a-uuid'),
      // The third field is the service (ids are unique per service only): a fourth is extra.
      b64(`2026-01-01T00:00:00.000000Z|${id}|shop|extra`),
      b64(`2026-01-01T00:00:00.000000Z|${id}|not a service`),
      `${b64(`2026-01-01T00:00:00.000000Z|${id}`)}!!`,
      'garbage',
    ]) {
      await expectRefused(`/v1/events?cursor=${cursor}`, 'invalid_cursor');
    }
    for (const cursor of [
      b64(`+275760-09-13T00:00:00.000Z|${id}`),
      b64(`2026-02-31T00:00:00.000Z|${id}`),
      'x',
    ]) {
      await expectRefused(`/v1/admin/archives?cursor=${cursor}`, 'invalid_cursor');
    }
    for (const cursor of [
      b64('audit|0'),
      b64('audit|99999999999999999'),
      b64('audit|1|2'),
      `${b64('audit|1')}=`,
    ]) {
      await expectRefused(`/v1/admin/audit?cursor=${cursor}`, 'invalid_cursor');
    }
  });
});

describe('bodies', () => {
  it('that are not UTF-8 are 400 invalid_utf8, whatever the route', async () => {
    const bad = Buffer.concat([
      Buffer.from('{"service":"s","type":"caf'),
      Buffer.from([0xe9]),
      Buffer.from('"}'),
    ]);
    await expectRefused('/v1/events', 'invalid_utf8', { raw: bad });
    await expectRefused('/v1/events', 'invalid_utf8', { raw: bad, gzip: true });
    await expectRefused('/v1/events/batch', 'invalid_utf8', {
      raw: bad,
      contentType: 'application/x-ndjson',
    });
    const surrogate = Buffer.from('{"name":"k\xed\xa0\x80","scopes":["read"]}', 'latin1');
    await expectRefused('/v1/admin/keys', 'invalid_utf8', { raw: surrogate });
  });
});

describe('numbers in events', () => {
  it('that do not survive a JSON round trip are refused with their path', async () => {
    for (const [number, path] of [
      ['1e-400', 'metadata.tiny'],
      ['0.1000000000000000000001', 'metadata.tiny'],
      ['9007199254740993', 'metadata.tiny'],
    ]) {
      const raw = `{"service":"s","type":"t","metadata":{"ok":1.5,"tiny":${number}}}`;
      const res = await expectRefused('/v1/events', 'invalid_event', { raw });
      expect(res.body.error.details).toEqual([expect.objectContaining({ path, code: 'invalid_number' })]);
    }
    const batch = await call(stack.url, '/v1/events/batch', {
      raw: `{"events":[{"service":"s","type":"t","metadata":{"a":[1e-400]}},{"service":"s","type":"t","metadata":{"a":1e2}}]}`,
    });
    expect(batch.status).toBe(202);
    expect(batch.body).toMatchObject({ accepted: 1, rejected: [{ index: 0, code: 'invalid_event' }] });
    expect(batch.body.rejected[0].details).toEqual([expect.objectContaining({ path: 'metadata.a.0' })]);
    const ndjson = await call(stack.url, '/v1/events/batch', {
      raw: '{"service":"s","type":"t","metadata":{"x":1e400}}\n{"service":"s","type":"t"}\n',
      contentType: 'application/x-ndjson',
    });
    expect(ndjson.body).toMatchObject({ accepted: 1, rejected: [{ index: 0, code: 'invalid_event' }] });
  });
});

describe('subject ids', () => {
  it('. and .. are refused at ingest: no path could name them', async () => {
    for (const userId of ['.', '..']) {
      const res = await expectRefused('/v1/events', 'invalid_event', { body: event({ userId }) });
      expect(res.body.error.details).toEqual([expect.objectContaining({ path: 'userId' })]);
      const batch = await call(stack.url, '/v1/events/batch', { body: { events: [event({ userId })] } });
      expect(batch.body).toMatchObject({ accepted: 0, rejected: [{ index: 0, code: 'invalid_event' }] });
    }
    expect((await call(stack.url, '/v1/events', { body: event({ userId: '...' }) })).status).toBe(202);
  });
});

describe('the audit trail', () => {
  it('keeps a row for a path holding %00, percent-encoded, and the call is answered', async () => {
    const requestId = `nul-${randomUUID()}`;
    const res = await call(stack.url, '/v1/users/a%00b/events', {
      method: 'DELETE',
      headers: { 'x-request-id': requestId },
    });
    expect([res.status, res.body.error.code]).toEqual([400, 'invalid_request']);
    const long = `/v1/users/${'%01'.repeat(600)}x%zz%C3/events`;
    expect(
      (await call(stack.url, long, { method: 'DELETE', headers: { 'x-request-id': `${requestId}-long` } }))
        .status,
    ).toBe(400);
    const page = await call(stack.url, '/v1/admin/audit?action=users.events.delete&limit=10');
    const row = page.body.entries.find((e: { requestId: string }) => e.requestId === requestId);
    expect(row).toMatchObject({
      path: '/v1/users/a%00b/events',
      target: 'a%00b',
      status: 400,
      outcome: 'error',
      details: { error: 'invalid_request', escaped: ['path', 'target'] },
    });
    const longRow = page.body.entries.find((e: { requestId: string }) => e.requestId === `${requestId}-long`);
    expect(longRow.path.startsWith('/v1/users/%01%01')).toBe(true);
    expect(longRow.details.escaped).toContain('path');
  });
});

describe('any query string on a GET route', () => {
  /** A query value: text of any kind, escapes good and bad, huge numbers, dates, cursors. */
  const value = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 40 }).map(encodeURIComponent),
    fc.string({ maxLength: 20 }),
    fc.constantFrom('%00', '%', '%zz', '%C3', '%ED%A0%80', '%FF%FE', '%2500', '+', '', '\u0000'),
    fc.constantFrom('1e400', '-1', '0', '99999999999999999999', '1.5', 'NaN', '0x10', '1e-400'),
    fc
      .constantFrom(
        '+275760-09-13T00:00:00Z',
        '-271821-04-20T00:00:00Z',
        '0000-01-01T00:00:00Z',
        '2026-02-31T00:00:00Z',
        '2026-01-01T24:00:00Z',
        '9999-12-31T23:59:59.999-23:59',
        '2026-01-01T00:00:00.1234567891234Z',
      )
      .map(encodeURIComponent),
    fc
      .tuple(fc.string({ maxLength: 30 }), fc.constantFrom('|', '|x|', ''), fc.uuid())
      .map(([a, sep, id]) => b64(`${a}${sep}${id}`)),
    fc
      .constantFrom('audit|1', 'audit|-1', '2026-13-01T00:00:00.000000Z|', '+275760-09-13T00:00:00.000Z|')
      .map(b64),
  );
  const routes: Record<string, string[]> = {
    '/v1/events': ['service', 'type', 'userId', 'from', 'to', 'limit', 'cursor'],
    '/v1/admin/audit': ['keyId', 'action', 'from', 'to', 'limit', 'cursor'],
    '/v1/admin/archives': ['month', 'service', 'status', 'limit', 'cursor'],
    '/v1/admin/retention/runs': ['limit'],
  };

  it('is answered without a 5xx', async () => {
    for (const [path, names] of Object.entries(routes)) {
      const param = fc.tuple(fc.constantFrom(...names, 'other'), value);
      await fc.assert(
        fc.asyncProperty(fc.array(param, { minLength: 1, maxLength: 4 }), async (params) => {
          const query = params.map(([name, v]) => `${name}=${v}`).join('&');
          const res = await call(stack.url, `${path}?${query}`);
          expect([query, res.status < 500]).toEqual([query, true]);
        }),
        { numRuns: 120 },
      );
    }
  });
});
