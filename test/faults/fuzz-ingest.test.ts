import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiResponse,
  call,
  expectHealthyAfterAbuse,
  type Stack,
  startStack,
  waitFor,
} from '../helpers/stack.ts';

// Property-based fuzzing of the body parser and the event validator, through HTTP, against a
// real `serve` process with a real `work` process behind it. For any input the API answers
// 202, 400, 413 or 415 (never a 5xx, never a dropped connection), every refusal has the
// contract's error shape, and every id it answered 202 for ends up stored exactly once.

/** Runs per property: about 4,000 requests in all, 15–20 s on two cores. */
const RUNS = 500;
const ALLOWED = [202, 400, 413, 415];
const PATHS = ['/v1/events', '/v1/events/batch'] as const;
type IngestPath = (typeof PATHS)[number];

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workers: 1 });
});
afterAll(async () => {
  await stack?.close();
});

/** Every id the API answered 202 for (accepted or duplicate), in the form it answered. */
const answered = new Set<string>();
const tally: Record<string, number> = {};
let requests = 0;

/** Sends one fuzzed request and checks the answer against the contract. */
async function send(
  path: IngestPath,
  raw: string | Uint8Array,
  opts: { contentType?: string; encoding?: string } = {},
): Promise<ApiResponse> {
  const headers: Record<string, string> = {};
  if (opts.encoding !== undefined) headers['content-encoding'] = opts.encoding;
  const res = await call(stack.url, path, {
    raw,
    contentType: opts.contentType ?? 'application/json',
    headers,
  });
  requests++;
  tally[res.status] = (tally[res.status] ?? 0) + 1;
  const shown = JSON.stringify(res.body)?.slice(0, 300);
  expect(ALLOWED, `${path} answered ${res.status}: ${shown}`).toContain(res.status);
  expect(res.headers.get('x-request-id')).toBeTruthy();
  if (res.status !== 202) {
    expect(res.body?.error, shown).toMatchObject({ code: expect.any(String), message: expect.any(String) });
    return res;
  }
  if (path === '/v1/events') {
    expect(res.body).toMatchObject({
      id: expect.any(String),
      status: expect.stringMatching(/^(accepted|duplicate)$/),
    });
    answered.add(res.body.id);
  } else {
    expect(res.body).toMatchObject({
      accepted: expect.any(Number),
      duplicates: expect.any(Number),
      skipped: 0,
      ids: expect.any(Array),
      rejected: expect.any(Array),
    });
    expect(res.body.ids).toHaveLength(res.body.accepted + res.body.duplicates);
    for (const id of res.body.ids) answered.add(id);
    for (const r of res.body.rejected) {
      expect(r).toMatchObject({
        index: expect.any(Number),
        code: expect.any(String),
        message: expect.any(String),
      });
    }
  }
  return res;
}

const path = fc.constantFrom(...PATHS);
/** Strings of any UTF-16 code units: NUL, lone surrogates, astral characters. */
const anyString = fc.string({ unit: 'binary', maxLength: 40 });
const anyJson = fc.jsonValue({ maxDepth: 6, stringUnit: 'binary' });
const hostileKey = fc.oneof(
  fc.constantFrom(
    '__proto__',
    'constructor',
    'prototype',
    'id',
    'service',
    'type',
    'timestamp',
    'metadata',
    '',
  ),
  anyString,
);
/** An object written as JSON text, so `__proto__` is a real key and not a prototype. */
const objectText = (maxLength: number) =>
  fc
    .array(fc.tuple(hostileKey, anyJson), { maxLength })
    .map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);

/**
 * Mostly plain characters, sometimes one that PostgreSQL or JSON handling trips on: NUL
 * (text and jsonb refuse it), lone surrogates, other controls, astral, quotes.
 */
const spicyChar = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...'abcxyzABC019 _-.é'.split('')) },
  fc.constantFrom('\u0000', '\ud800', '\udfff', '\u0001', '\u001f', '\u2028', '\uffff', '😀', '"', '\\', '/'),
);

/**
 * Ids are fresh for every request: the same id sent again with another `service`/`userId`
 * lands in another partition, whose dedupe set has not seen it (see the report on dedupe).
 */
const freshId = fc.boolean().map((upper) => (upper ? randomUUID().toUpperCase() : randomUUID()));

/** A valid event, each field of which may be replaced by anything, plus unknown fields. */
const mutatedEvent = fc
  .record(
    {
      id: fc.oneof({ weight: 9, arbitrary: freshId }, anyJson, anyString),
      service: fc.oneof({ weight: 9, arbitrary: fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/) }, anyJson),
      type: fc.oneof(
        { weight: 9, arbitrary: fc.string({ minLength: 1, maxLength: 128, unit: spicyChar }) },
        anyJson,
      ),
      timestamp: fc.oneof(
        {
          weight: 4,
          arbitrary: fc
            .integer({ min: -29 * 86_400_000, max: 4 * 60_000 })
            .map((offset) => new Date(Date.now() + offset).toISOString()),
        },
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        anyString,
        anyJson,
      ),
      userId: fc.oneof(
        { weight: 9, arbitrary: fc.string({ minLength: 1, maxLength: 256, unit: spicyChar }) },
        anyJson,
      ),
      message: fc.oneof({ weight: 9, arbitrary: fc.string({ maxLength: 1000, unit: spicyChar }) }, anyJson),
      metadata: fc.oneof(
        {
          weight: 4,
          arbitrary: fc.dictionary(
            fc.string({ maxLength: 20, unit: spicyChar }),
            fc.jsonValue({ maxDepth: 4, stringUnit: spicyChar }),
            { maxKeys: 8 },
          ),
        },
        anyJson,
      ),
    },
    // Missing fields are the business of the arbitrary-keys property; here both are present.
    { requiredKeys: ['service', 'type'] },
  )
  .chain((event) =>
    fc.array(fc.tuple(hostileKey, anyJson), { maxLength: 2 }).map((extra) => {
      const fields = Object.entries(event).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
      // Mostly none: an unknown field makes the whole event invalid.
      const unknown =
        extra.length === 2 ? extra.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`) : [];
      return `{${[...fields, ...unknown].join(',')}}`;
    }),
  );

/** Batch bodies built from event texts: the JSON envelope or NDJSON lines. */
const asBatch = (texts: string[], ndjson: boolean) =>
  ndjson
    ? { raw: texts.join('\n'), contentType: 'application/x-ndjson' }
    : { raw: `{"events":[${texts.join(',')}]}` };

const contentType = fc.constantFrom(
  'application/json',
  'application/x-ndjson',
  'application/jsonl',
  'application/cloudevents+json',
  'application/json; charset=utf-16',
  'text/plain',
);
/** Header values fetch can send: visible ASCII and spaces. */
const headerValue = fc.string({
  unit: fc.constantFrom(
    ...' !#$%&*+,-.;=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'.split(''),
  ),
  maxLength: 20,
});
const encodings = fc.oneof(
  fc.constantFrom(
    'gzip',
    'x-gzip',
    'GZIP',
    ' gzip ',
    'identity',
    'br',
    'deflate',
    'zstd',
    'gzip, gzip',
    'identity, gzip',
    '*',
  ),
  headerValue,
);

describe('fuzzing POST /v1/events and /v1/events/batch', () => {
  it('arbitrary JSON values: as the event, and as the batch list', async () => {
    await fc.assert(
      fc.asyncProperty(path, anyJson, async (p, value) => {
        const text = JSON.stringify(value);
        await send(p, text);
        if (p === '/v1/events/batch') await send(p, `{"events":${text}}`);
      }),
      { numRuns: RUNS },
    );
  });

  it('objects with arbitrary keys, __proto__ and constructor among them', async () => {
    await fc.assert(
      fc.asyncProperty(path, objectText(6), fc.boolean(), async (p, text, ndjson) => {
        await send(p, text);
        if (p === '/v1/events/batch') {
          const b = asBatch([text, text], ndjson);
          await send(p, b.raw, { contentType: b.contentType });
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('valid events with fields replaced by arbitrary values and extra fields', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(mutatedEvent, { minLength: 1, maxLength: 5 }),
        fc.boolean(),
        async (events, ndjson) => {
          await send('/v1/events', events[0] as string);
          const b = asBatch(events, ndjson);
          await send('/v1/events/batch', b.raw, { contentType: b.contentType });
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('arbitrary bytes under any JSON-ish content type', async () => {
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 2_000 }),
      fc.string({ unit: 'binary', maxLength: 500 }),
      // NDJSON-looking: lines of events, junk and blank lines.
      fc
        .array(fc.oneof(mutatedEvent, anyString, fc.constantFrom('', '\r', '{', '[]', 'null', '\ufeff{}')), {
          maxLength: 8,
        })
        .map((lines) => lines.join('\n')),
    );
    await fc.assert(
      fc.asyncProperty(path, body, contentType, async (p, raw, type) => {
        await send(p, raw, { contentType: type });
      }),
      { numRuns: RUNS },
    );
  });

  it('any Content-Encoding: only gzip and identity are read, everything else is 415', async () => {
    await fc.assert(
      fc.asyncProperty(path, mutatedEvent, encodings, fc.boolean(), async (p, text, encoding, gzipped) => {
        const raw = p === '/v1/events' ? text : `{"events":[${text}]}`;
        const res = await send(p, gzipped ? gzipSync(raw) : raw, { encoding });
        const name = encoding.trim().toLowerCase();
        if (name !== '' && !['gzip', 'x-gzip', 'identity'].includes(name)) {
          expect(res.status, `Content-Encoding ${JSON.stringify(encoding)}`).toBe(415);
          expect(res.body.error.code).toBe('unsupported_media_type');
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('gzip of arbitrary bytes, of events, and cut short', async () => {
    const inner = fc.oneof(
      fc.uint8Array({ maxLength: 2_000 }),
      mutatedEvent.map((t) => new TextEncoder().encode(t)),
      fc
        .array(mutatedEvent, { maxLength: 5 })
        .map((ts) => new TextEncoder().encode(`{"events":[${ts.join(',')}]}`)),
    );
    await fc.assert(
      fc.asyncProperty(path, inner, fc.nat(), fc.boolean(), async (p, bytes, cut, truncate) => {
        const gz = gzipSync(bytes);
        const body = truncate ? gz.subarray(0, cut % gz.length) : gz;
        await send(p, body, { encoding: 'gzip' });
      }),
      { numRuns: RUNS },
    );
  });

  it('batches around both limits at once: 1000 events and MAX_BODY_BYTES', async () => {
    // Events of 1000–1100 bytes, 990–1010 of them: some batches pass, some are refused as
    // too many events, some as too large a body, in either envelope.
    const count = fc.oneof(fc.constantFrom(1_000, 1_001), fc.integer({ min: 990, max: 1_010 }));
    await fc.assert(
      fc.asyncProperty(
        count,
        fc.integer({ min: 1_000, max: 1_100 }),
        fc.boolean(),
        async (n, size, ndjson) => {
          const event: Record<string, unknown> = { service: 'bulk', type: 't', message: 'm'.repeat(959) };
          if (size > 1_000) event.metadata = { p: 'x'.repeat(size - 1_000) };
          const text = JSON.stringify(event);
          const b = asBatch(
            Array.from({ length: n }, () => text),
            ndjson,
          );
          const res = await send('/v1/events/batch', b.raw, { contentType: b.contentType });
          const tooLarge = n > 1_000 || Buffer.byteLength(b.raw) > 1_048_576;
          expect(res.status, `${n} events, ${Buffer.byteLength(b.raw)} bytes`).toBe(tooLarge ? 413 : 202);
          if (!tooLarge) expect(res.body.accepted).toBe(n);
        },
      ),
      { numRuns: 16 },
    );
  });

  it('stores every id answered with 202 exactly once, and nothing else; no 5xx was logged', async () => {
    expect(answered.size).toBeGreaterThan(50);
    const rows = async () =>
      (
        await stack.env.pool.query<{ id: string; n: number }>(
          'SELECT id::text, count(*)::int AS n FROM events GROUP BY id',
        )
      ).rows;
    // On a timeout, go on: the comparison below shows which ids are missing.
    await waitFor(
      async () => (await rows()).reduce((sum, r) => sum + r.n, 0) >= answered.size,
      30_000,
      `${answered.size} rows`,
    ).catch(() => {});
    // Let the worker finish anything still in flight before counting for good: nothing
    // pending, nothing left in the streams (dead letters are checked below).
    await waitFor(
      async () => {
        const b = await call(stack.url, '/health/buffer');
        return b.body.pending === 0 && b.body.length === 0;
      },
      30_000,
      'the buffer drained',
    ).catch(() => {});
    const stored = await rows();
    const expected = [...answered].map((id) => ({ id: id.toLowerCase(), n: 1 }));
    const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
    const storedIds = new Set(stored.map((r) => r.id));
    const missing = expected.filter((e) => !storedIds.has(e.id)).length;
    expect(stored.sort(byId), `${missing} of ${expected.length} ids not stored`).toEqual(expected.sort(byId));
    await expectHealthyAfterAbuse(stack);
    console.info(
      'fuzz-ingest figures',
      JSON.stringify({ runsPerProperty: RUNS, requests, tally, stored: stored.length }),
    );
  });
});
