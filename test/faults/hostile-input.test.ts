import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { createGzip, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY } from '../helpers/env.ts';
import { checkResponse } from '../helpers/openapi.ts';
import {
  type ApiResponse,
  call,
  event,
  expectHealthyAfterAbuse,
  type Stack,
  startStack,
  waitFor,
} from '../helpers/stack.ts';

// Every kind of hostile input the contract names, sent over HTTP to a real `serve` process
// (with one real `work` process behind it): each is refused with the contract's status and
// code, none reaches the table, and the process stays alive and within its memory.

const HEADERS_TIMEOUT_MS = 1_000;
const REQUEST_TIMEOUT_MS = 2_000;
const MAX_BODY_BYTES = 1_048_576;
/** What one gzip bomb below inflates to: 768× the body limit, from about 780 KiB. */
const BOMB_INFLATED_BYTES = 3 * 256 * MAX_BODY_BYTES;
/**
 * How much the API process's resident memory may grow under a burst of 250 hostile bodies:
 * less than one bomb inflated, so not one of the 100 bombs in the burst was inflated whole.
 * Most of the growth is the 50 deeply nested bodies, parsed at once: 400–430 MB with the
 * 16 MiB young generation the service runs with (garbage reaches the old generation sooner),
 * against an idle process of about 190 MB.
 */
const RSS_GROWTH_LIMIT_BYTES = BOMB_INFLATED_BYTES;

let stack: Stack;
let bomb: Buffer;
beforeAll(async () => {
  // Three gzip members of 256 MiB of spaces each, after a JSON prefix; gunzip reads them all.
  const member = await gzipStream('{"events":[{"service":"x","type":"t","message":"', 256 * MAX_BODY_BYTES);
  bomb = Buffer.concat([member, member, member]);
  expect(bomb.length).toBeLessThan(MAX_BODY_BYTES);
  stack = await startStack({
    workers: 1,
    env: {
      HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
    },
  });
});
afterAll(async () => {
  await stack?.close();
});

const single = (opts: Parameters<typeof call>[2]) => call(stack.url, '/v1/events', opts);
const batch = (opts: Parameters<typeof call>[2]) => call(stack.url, '/v1/events/batch', opts);
const ndjson = (lines: string[]) =>
  batch({ raw: `${lines.join('\n')}\n`, contentType: 'application/x-ndjson' });

function expectRefused(res: ApiResponse, status: number, code: string): void {
  expect(res.status, JSON.stringify(res.body)?.slice(0, 500)).toBe(status);
  expect(res.body.error).toMatchObject({ code, message: expect.any(String) });
}

/** 400 invalid_event naming the offending path and its code. */
function expectInvalidEvent(res: ApiResponse, path: string, code: string): void {
  expectRefused(res, 400, 'invalid_event');
  expect(res.body.error.details).toEqual(expect.arrayContaining([expect.objectContaining({ path, code })]));
}

/** A 202 batch answer in which nothing was accepted and every item was refused as `code`. */
function expectBatchAllRejected(res: ApiResponse, count: number, detailCode?: string): void {
  expect(res.status, JSON.stringify(res.body)?.slice(0, 500)).toBe(202);
  expect(res.body).toMatchObject({ accepted: 0, duplicates: 0, ids: [] });
  expect(res.body.rejected).toHaveLength(count);
  for (const r of res.body.rejected) {
    expect(r.code).toBe('invalid_event');
    if (detailCode) expect(r.details.map((d: { code: string }) => d.code)).toContain(detailCode);
  }
}

const nestedArrays = (depth: number, inner = '1') => `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;
const nestedObjects = (depth: number) => `${'{"d":'.repeat(depth)}1${'}'.repeat(depth)}`;

describe('deep nesting', () => {
  it('refuses metadata nested far beyond 16 levels, as arrays or objects, in single and batch', async () => {
    for (const deep of [nestedArrays(100_000), nestedObjects(50_000)]) {
      const raw = `{"service":"x","type":"t","metadata":{"a":${deep}}}`;
      const res = await single({ raw });
      expectRefused(res, 400, 'invalid_event');
      expect(res.body.error.details[0].code).toBe('too_deep');
      expect(res.body.error.details[0].path).toMatch(/^metadata\.a(\.(0|d)){15}$/);
      expectBatchAllRejected(await batch({ raw: `{"events":[${raw},${raw}]}` }), 2, 'too_deep');
      expectBatchAllRejected(await ndjson([raw, raw, raw]), 3, 'too_deep');
    }
  });

  it('refuses deep values where no nesting is allowed: the body, a field, the batch envelope', async () => {
    expectInvalidEvent(await single({ raw: nestedArrays(200_000) }), '', 'invalid_type');
    expectInvalidEvent(
      await single({ raw: `{"service":"x","type":${nestedArrays(200_000)}}` }),
      'type',
      'invalid_type',
    );
    expectInvalidEvent(
      await single({ raw: `{"service":"x","type":"t","extra":${nestedObjects(100_000)}}` }),
      'extra',
      'unknown_field',
    );
    expectRefused(await batch({ raw: `{"events":${nestedObjects(100_000)}}` }), 400, 'invalid_batch');
    expectBatchAllRejected(await batch({ raw: `{"events":[${nestedArrays(200_000)}]}` }), 1, 'invalid_type');
    // JSON that ends before its nesting does.
    expectRefused(await single({ raw: '['.repeat(300_000) }), 400, 'invalid_json');
  });
});

describe('prototype keys', () => {
  it('refuses __proto__, constructor and prototype keys anywhere in metadata', async () => {
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      for (const [metadata, path] of [
        [`{"${key}":{"polluted":true}}`, `metadata.${key}`],
        [`{"a":[{"b":{"${key}":1}}]}`, `metadata.a.0.b.${key}`],
        [`{"ok":1,"${key}":null}`, `metadata.${key}`],
      ] as const) {
        const raw = `{"service":"x","type":"t","metadata":${metadata}}`;
        expectInvalidEvent(await single({ raw }), path, 'forbidden_key');
        expectBatchAllRejected(await batch({ raw: `{"events":[${raw}]}` }), 1, 'forbidden_key');
        expectBatchAllRejected(await ndjson([raw]), 1, 'forbidden_key');
      }
    }
  });

  it('refuses them as top-level fields and in the batch envelope, and nothing gets polluted', async () => {
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      const raw = `{"service":"x","type":"t","${key}":{"service":"polluted","type":"polluted","isAdmin":true}}`;
      expectInvalidEvent(await single({ raw }), key, 'unknown_field');
      expectRefused(
        await batch({ raw: `{"events":[{"service":"x","type":"t"}],"${key}":{"events":[]}}` }),
        400,
        'invalid_batch',
      );
    }
    // Had any of them reached Object.prototype, these would now pass or change shape.
    const empty = await single({ body: {} });
    expectInvalidEvent(empty, 'service', 'required');
    expectInvalidEvent(empty, 'type', 'required');
    expectRefused(
      await batch({ raw: '{"__proto__":{"events":[{"service":"x","type":"t"}]}}' }),
      400,
      'invalid_batch',
    );
  });
});

describe('NUL characters and lone surrogates', () => {
  const bad = ['a\u0000b', '\u0000', 'x\ud800', '\udfff y', '\udc00\ud800'];

  it('refuses them in every string field, in metadata values and in metadata keys', async () => {
    for (const s of bad) {
      for (const field of ['service', 'type', 'userId', 'message']) {
        const body = { service: 'x', type: 't', [field]: s };
        const res = await single({ body });
        expectRefused(res, 400, 'invalid_event');
        expect(res.body.error.details[0].path).toBe(field);
      }
      expectInvalidEvent(
        await single({ body: event({ metadata: { a: { b: [s] } } }) }),
        'metadata.a.b.0',
        'invalid_string',
      );
      expectInvalidEvent(
        await single({ body: event({ metadata: { a: { [s]: 1 } } }) }),
        'metadata.a',
        'invalid_string',
      );
      expectInvalidEvent(
        await single({ body: event({ timestamp: `2026-01-01T00:00:00Z${s}` }) }),
        'timestamp',
        'invalid_format',
      );
      expectBatchAllRejected(
        await batch({ body: { events: [event({ type: s }), event({ metadata: { [s]: s } })] } }),
        2,
      );
      expectBatchAllRejected(await ndjson([JSON.stringify(event({ userId: s }))]), 1, 'invalid_string');
    }
  });

  it('refuses a raw NUL byte or a raw control character as broken JSON', async () => {
    expectRefused(await single({ raw: '{"service":"x","type":"a\u0000b"}' }), 400, 'invalid_json');
    expectRefused(await single({ raw: '{"service":"x","type":"t"}\u0000' }), 400, 'invalid_json');
    const res = await ndjson(['{"service":"x","type":"\u0001"}']);
    expect(res.body.rejected).toEqual([
      { index: 0, code: 'invalid_json', message: 'line is not valid JSON' },
    ]);
  });
});

describe('tracking plans', () => {
  it('a catastrophic pattern in a schema cannot hold the process on hostile strings', async () => {
    // `^(a+)+$` on forty `a`s and a `!` backtracks 2^40 times: hours, unless V8 falls back
    // to its linear-time engine (src/main.ts, events/plans.ts).
    const put = await call(stack.url, '/v1/schemas/hostile-plan/signup', {
      method: 'PUT',
      body: { schema: { type: 'object', properties: { name: { type: 'string', pattern: '^(a+)+$' } } } },
    });
    expect(put.status).toBe(200);
    await call(stack.url, '/v1/schemas/hostile-plan', { method: 'PUT', body: { mode: 'reject' } });
    const hostile = event({
      service: 'hostile-plan',
      type: 'signup',
      metadata: { name: `${'a'.repeat(40)}!` },
    });
    const res = await single({ body: hostile });
    expectRefused(res, 400, 'schema_violation');
    expect(res.body.error.details).toEqual([
      expect.objectContaining({ path: 'metadata.name', code: 'invalid_format' }),
    ]);
    // A matching name passes (a dry run: this file stores nothing but its sentinel).
    const fine = await call(stack.url, '/v1/events/validate', {
      body: { events: [event({ service: 'hostile-plan', type: 'signup', metadata: { name: 'aaa' } })] },
    });
    expect(fine.body).toMatchObject({ accepted: 1, rejected: [] });
    await expectHealthyAfterAbuse(stack);
  });
});

describe('numbers JSON cannot carry exactly', () => {
  const numbers = [
    '1e400',
    '-1e400',
    '9007199254740993',
    '-9007199254740993',
    '1e20',
    '123456789012345678901234567890',
  ];

  it('refuses them in metadata at any depth', async () => {
    for (const n of numbers) {
      const raw = `{"service":"x","type":"t","metadata":{"n":${n},"deep":{"list":[1,${n}]}}}`;
      const res = await single({ raw });
      expectInvalidEvent(res, 'metadata.n', 'invalid_number');
      expectInvalidEvent(res, 'metadata.deep.list.1', 'invalid_number');
      expectBatchAllRejected(await batch({ raw: `{"events":[${raw}]}` }), 1, 'invalid_number');
      expectBatchAllRejected(await ndjson([raw]), 1, 'invalid_number');
    }
  });

  it('refuses them where a string is expected', async () => {
    for (const n of numbers) {
      expectInvalidEvent(await single({ raw: `{"service":"x","type":${n}}` }), 'type', 'invalid_type');
      expectRefused(await single({ raw: `{"service":"x","type":"t","id":${n}}` }), 400, 'invalid_event');
      expectRefused(
        await single({ raw: `{"service":"x","type":"t","timestamp":${n}}` }),
        400,
        'invalid_event',
      );
    }
  });
});

describe('gzip bombs and content encodings', () => {
  it('413 for a gzip bomb to either endpoint, in either media type', async () => {
    const headers = { 'content-encoding': 'gzip' };
    expectRefused(await single({ raw: bomb, headers }), 413, 'payload_too_large');
    expectRefused(await batch({ raw: bomb, headers }), 413, 'payload_too_large');
    expectRefused(
      await batch({ raw: bomb, headers, contentType: 'application/x-ndjson' }),
      413,
      'payload_too_large',
    );
    // Just over the limit once inflated: the bound is the limit itself, not a round number.
    const justOver = gzipSync(
      JSON.stringify({ service: 'x', type: 't', message: ' '.repeat(MAX_BODY_BYTES) }),
    );
    expectRefused(await single({ raw: justOver, headers }), 413, 'payload_too_large');
  });

  it('400 for a gzip body that is not gzip, is truncated, or is gzip inside gzip', async () => {
    const headers = { 'content-encoding': 'gzip' };
    const valid = gzipSync(JSON.stringify(event()));
    expectRefused(await single({ raw: JSON.stringify(event()), headers }), 400, 'invalid_json');
    expectRefused(await single({ raw: valid.subarray(0, valid.length - 12), headers }), 400, 'invalid_json');
    // Decoded once, gzip inside gzip is binary: not even UTF-8 text.
    expectRefused(await single({ raw: gzipSync(valid), headers }), 400, 'invalid_utf8');
    expectRefused(await single({ raw: new Uint8Array(0), headers }), 400, 'invalid_json');
  });

  it('415 for any other Content-Encoding, even when the body is encoded that way', async () => {
    const body = JSON.stringify(event());
    for (const encoding of [
      'br',
      'deflate',
      'compress',
      'zstd',
      'gzip, gzip',
      'identity, gzip',
      '*',
      'gzip;q=1',
      'bogus',
    ]) {
      const headers = { 'content-encoding': encoding };
      expectRefused(await single({ raw: body, headers }), 415, 'unsupported_media_type');
      expectRefused(await batch({ raw: body, headers }), 415, 'unsupported_media_type');
    }
  });

  it('415 for another content type, before looking at the body', async () => {
    for (const contentType of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/jsonx',
    ]) {
      expectRefused(
        await single({ raw: JSON.stringify(event()), contentType }),
        415,
        'unsupported_media_type',
      );
      expectRefused(
        await batch({ raw: bomb, contentType, headers: { 'content-encoding': 'gzip' } }),
        415,
        'unsupported_media_type',
      );
    }
    expectRefused(
      await single({ raw: JSON.stringify(event()), contentType: 'application/x-ndjson' }),
      415,
      'unsupported_media_type',
    );
  });
});

describe('bodies over the limit', () => {
  it('413 for a declared Content-Length over the limit, answered before the body is sent', async () => {
    const declared = 10 * 1024 * 1024 * 1024;
    const x = await rawExchange(
      `${requestHead('/v1/events', { 'content-length': String(declared) })}{"service":`,
      {
        giveUpMs: 10_000,
      },
    );
    // The server had 10 bytes of 10 GiB: an answer that soon means it never waited for the rest
    // (waiting would have ended in a 408 after REQUEST_TIMEOUT_MS).
    expect(x.status).toBe(413);
    expect(x.json?.error.code).toBe('payload_too_large');
    expect(x.firstByteMs).toBeLessThan(REQUEST_TIMEOUT_MS / 2);
    expect(x.closedByServer).toBe(true);

    const viaBatch = await rawExchange(
      requestHead('/v1/events/batch', {
        'content-length': String(MAX_BODY_BYTES + 1),
        'content-encoding': 'gzip',
      }),
      { giveUpMs: 10_000 },
    );
    expect(viaBatch.status).toBe(413);
    expect(viaBatch.firstByteMs).toBeLessThan(REQUEST_TIMEOUT_MS / 2);
  });

  it('413 for a chunked body (no Content-Length) that grows past the limit', async () => {
    // A raw socket rather than fetch: the server answers and closes while the upload is still
    // going, which fetch reports as EPIPE instead of the response. The upload is bounded (an
    // endless body stream once grew the test process itself until the kernel killed it).
    const x = await chunkedUpload('/v1/events', { chunkBytes: 64 * 1024, maxBytes: 4 * MAX_BODY_BYTES });
    expect(x.status).toBe(413);
    expect(x.json?.error.code).toBe('payload_too_large');
    expect(x.bytesSent).toBeLessThanOrEqual(4 * MAX_BODY_BYTES);
  });

  it('answers Content-Length lies: 400 when the body is longer, 408 when it never comes', async () => {
    const body = JSON.stringify(event());
    const shorter = await rawExchange(
      requestHead('/v1/events', { 'content-length': '10', connection: 'close' }) + body,
      { giveUpMs: 10_000 },
    );
    expect(shorter.status).toBe(400);
    // Node's parser refuses the bytes after the declared length, in the contract's shape.
    expect(shorter.json?.error.code).toBe('bad_request');
    expect(shorter.closedByServer).toBe(true);

    const longer = await rawExchange(
      requestHead('/v1/events', { 'content-length': String(body.length + 100) }) + body,
      {
        giveUpMs: 10_000,
      },
    );
    expect(longer.status).toBe(408);
    expect(longer.json?.error.code).toBe('request_timeout');
    expect(longer.closedByServer).toBe(true);
    expect(longer.closeMs).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100);
    expect(longer.closeMs).toBeLessThan(REQUEST_TIMEOUT_MS + 1_500);
  });
});

describe('slow-loris clients', () => {
  it('408 and a closed socket when headers stop half-way, after HEADERS_TIMEOUT_MS', async () => {
    const x = await rawExchange('POST /v1/events HTTP/1.1\r\nHost: x\r\nx-api-key: ', { giveUpMs: 15_000 });
    expect(x.status).toBe(408);
    expect(x.json?.error.code).toBe('request_timeout');
    expect(x.closedByServer).toBe(true);
    expect(x.closeMs).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 100);
    expect(x.closeMs).toBeLessThan(HEADERS_TIMEOUT_MS + 1_000);
    slowLorisTimings.headersIdle = x.closeMs;
  });

  it('408 when headers trickle in one byte every 200 ms, after HEADERS_TIMEOUT_MS', async () => {
    const x = await rawExchange('POST /v1/events HTTP/1.1\r\nHost: x\r\n', {
      trickle: `x-pad: ${'a'.repeat(500)}\r\n`,
      everyMs: 200,
      giveUpMs: 15_000,
    });
    expect(x.status).toBe(408);
    expect(x.json?.error.code).toBe('request_timeout');
    expect(x.closedByServer).toBe(true);
    expect(x.closeMs).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 100);
    expect(x.closeMs).toBeLessThan(HEADERS_TIMEOUT_MS + 1_000);
    slowLorisTimings.headersTrickle = x.closeMs;
  });

  it('408 when the body trickles in one byte every 200 ms, after REQUEST_TIMEOUT_MS', async () => {
    const body = JSON.stringify(event());
    const x = await rawExchange(requestHead('/v1/events', { 'content-length': String(body.length) }), {
      trickle: body,
      everyMs: 200,
      giveUpMs: 30_000,
    });
    expect(x.status).toBe(408);
    expect(x.json?.error.code).toBe('request_timeout');
    expect(x.closedByServer).toBe(true);
    expect(x.bytesTrickled).toBeLessThan(body.length);
    expect(x.closeMs).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100);
    expect(x.closeMs).toBeLessThan(REQUEST_TIMEOUT_MS + 1_000);
    slowLorisTimings.bodyTrickle = x.closeMs;
  });

  it('still answers everyone else while slow clients hold sockets', async () => {
    const sockets = Array.from({ length: 50 }, () =>
      rawExchange('POST /v1/events HTTP/1.1\r\nHost: x\r\n', {
        trickle: 'x'.repeat(100),
        everyMs: 200,
        giveUpMs: 10_000,
      }),
    );
    const live = await call(stack.url, '/health/live', { key: null });
    expect(live.status).toBe(200);
    const held = await Promise.all(sockets);
    expect(held.map((h) => h.status)).toEqual(held.map(() => 408));
  });
});

describe('memory under a burst of hostile bodies', () => {
  it(`keeps the API process within ${RSS_GROWTH_LIMIT_BYTES / 1024 / 1024} MB of its idle size, and alive`, async () => {
    const pid = stack.api.child.pid as number;
    const before = await rssBytes(pid);
    const oversized = Buffer.alloc(2 * MAX_BODY_BYTES, 0x20);
    const deep = Buffer.from(`{"service":"x","type":"t","metadata":{"a":${nestedArrays(450_000)}}}`);
    expect(deep.length).toBeLessThan(MAX_BODY_BYTES);

    let peak = before;
    const sampler = setInterval(() => {
      rssBytes(pid).then(
        (rss) => {
          peak = Math.max(peak, rss);
        },
        () => {},
      );
    }, 25);
    const rounds = 50;
    // A request the server cuts off before its body is all sent (a 408 after
    // REQUEST_TIMEOUT_MS while 250 hostile requests keep both cores busy, or a 413 on the
    // declared length) reaches the client as a broken pipe: status 0, a refusal too.
    const cutOff = (p: Promise<{ status: number }>) =>
      p.catch((err: unknown) => {
        const code = (err as { cause?: { code?: string } }).cause?.code;
        if (code === 'EPIPE' || code === 'ECONNRESET') return { status: 0 };
        throw err;
      });
    const statuses = await Promise.all([
      ...Array.from({ length: rounds }, () =>
        cutOff(single({ raw: bomb, headers: { 'content-encoding': 'gzip' } })),
      ),
      ...Array.from({ length: rounds }, () =>
        cutOff(batch({ raw: bomb, headers: { 'content-encoding': 'gzip' } })),
      ),
      ...Array.from({ length: rounds }, () => cutOff(single({ raw: oversized }))),
      ...Array.from({ length: rounds }, () => cutOff(single({ raw: deep }))),
      ...Array.from({ length: rounds }, () =>
        rawExchange(requestHead('/v1/events', { 'content-length': String(1 << 30) }), { giveUpMs: 10_000 }),
      ),
    ])
      .then((results) => results.map((r) => r.status))
      .finally(() => clearInterval(sampler));
    const after = await rssBytes(pid);
    memoryFigures.push({ before, peak, after });

    // 250 hostile requests at once keep two cores busy for seconds: a body still on its way
    // after REQUEST_TIMEOUT_MS is cut off with a 408, which is a refusal too.
    const tally = countBy(statuses);
    burstStatuses.push(tally);
    expect(
      Object.keys(tally)
        .map(Number)
        .every((s) => [0, 400, 408, 413].includes(s)),
      JSON.stringify(tally),
    ).toBe(true);
    expect(tally[0] ?? 0).toBeLessThanOrEqual(4 * rounds);
    expect((tally[413] ?? 0) + (tally[0] ?? 0)).toBeGreaterThanOrEqual(3 * rounds);
    expect(peak - before).toBeLessThan(RSS_GROWTH_LIMIT_BYTES);
    expect(after - before).toBeLessThan(RSS_GROWTH_LIMIT_BYTES);
    expect(stack.api.child.exitCode).toBeNull();
    expect((await call(stack.url, '/health/live', { key: null })).status).toBe(200);
  });
});

describe('after all of it', () => {
  it('nothing reached the worker: the table holds only a sentinel sent last, and no 5xx was logged', async () => {
    const sentinel = event({ service: 'sentinel', metadata: { last: true } });
    const res = await single({ body: sentinel });
    expect(res.status).toBe(202);
    await waitFor(
      async () =>
        (await stack.env.pool.query('SELECT 1 FROM events WHERE id = $1', [sentinel.id])).rowCount === 1,
      15_000,
      'the sentinel row',
    );
    const rows = await stack.env.pool.query<{ id: string; service: string }>(
      'SELECT id, service FROM events',
    );
    expect(rows.rows).toEqual([{ id: sentinel.id, service: 'sentinel' }]);
    await expectHealthyAfterAbuse(stack);
    console.info(
      'hostile-input figures',
      JSON.stringify({ slowLorisTimings, memory: memoryFigures.map(mb), burstStatuses }),
    );
  });
});

const slowLorisTimings: Record<string, number> = {};
const memoryFigures: { before: number; peak: number; after: number }[] = [];
const burstStatuses: Record<number, number>[] = [];
const countBy = (values: number[]) => {
  const out: Record<number, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
};
const mb = (m: Record<string, number>) =>
  Object.fromEntries(Object.entries(m).map(([k, v]) => [k, `${Math.round(v / 1024 / 1024)} MB`]));

/** Resident memory of a process, from /proc. */
async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (!kb) throw new Error(`no VmRSS for ${pid}`);
  return Number(kb) * 1024;
}

/** gzip of `prefix` followed by `size` spaces, compressed as it is produced (never held whole). */
async function gzipStream(prefix: string, size: number): Promise<Buffer> {
  const gz = createGzip({ level: 9 });
  const chunks: Buffer[] = [];
  gz.on('data', (c: Buffer) => chunks.push(c));
  const ended = once(gz, 'end');
  gz.write(prefix);
  const block = Buffer.alloc(1024 * 1024, 0x20);
  for (let written = 0; written < size; written += block.length) {
    if (!gz.write(block)) await once(gz, 'drain');
  }
  gz.end();
  await ended;
  return Buffer.concat(chunks);
}

function requestHead(path: string, headers: Record<string, string>): string {
  const all: Record<string, string> = {
    host: 'x',
    'x-api-key': ADMIN_KEY,
    'content-type': 'application/json',
    ...headers,
  };
  const lines = Object.entries(all).map(([k, v]) => `${k}: ${v}\r\n`);
  return `POST ${path} HTTP/1.1\r\n${lines.join('')}\r\n`;
}

interface RawExchange {
  /** Status of the first response, or 0 when none came. */
  status: number;
  /** Its body, parsed, when it was JSON. */
  // biome-ignore lint/suspicious/noExplicitAny: inspected field by field, like call()'s
  json: any;
  text: string;
  firstByteMs: number;
  closeMs: number;
  /** The server closed the connection (rather than the client giving up). */
  closedByServer: boolean;
  bytesTrickled: number;
}

/**
 * Uploads a body of spaces with `Transfer-Encoding: chunked`, `chunkBytes` at a time, until the
 * server answers or closes, or `maxBytes` were sent; resolves with the server's first response.
 */
function chunkedUpload(
  path: string,
  opts: { chunkBytes: number; maxBytes: number },
): Promise<{ status: number; json: { error: { code: string } } | undefined; bytesSent: number }> {
  const { hostname, port } = new URL(stack.url);
  return new Promise((resolve) => {
    let text = '';
    let bytesSent = 0;
    let answered = false;
    const chunk = Buffer.concat([
      Buffer.from(`${opts.chunkBytes.toString(16)}\r\n`),
      Buffer.alloc(opts.chunkBytes, 0x20),
      Buffer.from('\r\n'),
    ]);
    const socket = connect(Number(port), hostname, () => {
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nx-api-key: ${ADMIN_KEY}\r\n` +
          'content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n',
      );
      const pump = () => {
        while (!answered && !socket.destroyed && bytesSent < opts.maxBytes) {
          bytesSent += opts.chunkBytes;
          if (!socket.write(chunk)) return void socket.once('drain', pump);
        }
        if (!answered && !socket.destroyed) socket.write('0\r\n\r\n');
      };
      pump();
    });
    const finish = () => {
      clearTimeout(giveUp);
      socket.destroy();
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      let json: { error: { code: string } } | undefined;
      try {
        json = JSON.parse(text.split('\r\n\r\n')[1] ?? '');
      } catch {
        json = undefined;
      }
      resolve({ status, json, bytesSent });
    };
    const giveUp = setTimeout(finish, 20_000);
    socket.setEncoding('utf8');
    socket.on('data', (data: string) => {
      answered = true;
      text += data;
      // The whole JSON body is in once it parses; the server may keep the socket open.
      if (/\r\n\r\n\{.*\}\s*$/s.test(text)) finish();
    });
    socket.on('error', () => {});
    socket.on('close', finish);
  });
}

/**
 * Opens a socket, writes `head`, then `trickle` one byte every `everyMs`, and resolves when
 * the server closes the connection, or after `giveUpMs`.
 */
function rawExchange(
  head: string,
  opts: { trickle?: string; everyMs?: number; giveUpMs: number },
): Promise<RawExchange> {
  const { hostname, port } = new URL(stack.url);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const since = () => Math.round(performance.now() - started);
    let text = '';
    let firstByteMs = -1;
    let bytesTrickled = 0;
    let timer: NodeJS.Timeout | undefined;
    const socket = connect(Number(port), hostname, () => {
      socket.write(head);
      const trickle = opts.trickle;
      if (!trickle) return;
      timer = setInterval(() => {
        if (socket.destroyed || !socket.writable || bytesTrickled >= trickle.length) return;
        socket.write(trickle.charAt(bytesTrickled++));
      }, opts.everyMs ?? 200);
    });
    const finish = (closedByServer: boolean) => {
      clearInterval(timer);
      clearTimeout(giveUp);
      socket.destroy();
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      const [responseHead = '', body = ''] = text.split('\r\n\r\n');
      let json: unknown;
      try {
        json = body ? JSON.parse(body) : undefined;
      } catch {
        json = undefined;
      }
      if (status !== 0) {
        // Checked like every other answer: the document must describe it.
        const [method = '', path = ''] = head.split(' ');
        const contentType = /^content-type:\s*(.+)$/im.exec(responseHead)?.[1]?.trim() ?? null;
        try {
          checkResponse({ method, path, status, contentType, text: body });
        } catch (err) {
          reject(err);
          return;
        }
      }
      resolve({ status, json, text, firstByteMs, closeMs: since(), closedByServer, bytesTrickled });
    };
    const giveUp = setTimeout(() => finish(false), opts.giveUpMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      if (firstByteMs < 0) firstByteMs = since();
      text += chunk;
    });
    socket.on('error', () => {});
    socket.on('close', () => finish(true));
  });
}
