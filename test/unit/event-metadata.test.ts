import { describe, expect, it } from 'vitest';
import { checkMetadata, parseEvent } from '../../src/events/event.schema.ts';

const ctx = { now: Date.parse('2026-06-15T12:00:00Z'), maxAgeMs: 30 * 86_400_000 };
const found = (value: unknown) => checkMetadata(value).map((i) => `${i.path}:${i.code}`);

describe('event metadata: the top level', () => {
  it.each([
    ['a number', 5],
    ['a string', 'x'],
    ['an array', [1]],
    ['true', true],
  ])('refuses %s in place of an object', (_what, metadata) => {
    const r = parseEvent({ service: 's', type: 't', metadata }, ctx);
    expect(r.ok ? [] : r.issues).toEqual([
      { path: 'metadata', code: 'invalid_type', message: 'must be a JSON object' },
    ]);
  });

  it('refuses null when asked directly (parseEvent takes null for none)', () => {
    expect(checkMetadata(null)).toEqual([
      { path: 'metadata', code: 'invalid_type', message: 'must be a JSON object' },
    ]);
  });

  it('takes null metadata for none', () => {
    const r = parseEvent({ service: 's', type: 't', metadata: null }, ctx);
    expect(r.ok && 'metadata' in r.event).toBe(false);
    expect(r.ok).toBe(true);
  });
});

describe('event metadata: strings and keys', () => {
  it('refuses a NUL and a lone surrogate in a string, each on its own', () => {
    expect(checkMetadata({ a: 'x\u0000', b: '\uD800x', c: 'é😀' })).toEqual([
      { path: 'metadata.a', code: 'invalid_string', message: 'must be valid Unicode with no NUL characters' },
      { path: 'metadata.b', code: 'invalid_string', message: 'must be valid Unicode with no NUL characters' },
    ]);
  });

  it('refuses a key with a NUL or a lone surrogate, at the path of its object', () => {
    expect(checkMetadata({ o: { 'k\u0000': 1, '\uDC00': 2, ok: 3 } })).toEqual([
      { path: 'metadata.o', code: 'invalid_string', message: 'keys must be valid Unicode with no NUL' },
      { path: 'metadata.o', code: 'invalid_string', message: 'keys must be valid Unicode with no NUL' },
    ]);
  });

  it('refuses the prototype keys and does not look inside them', () => {
    const value = JSON.parse(
      '{"__proto__":{"y":"\\u0000"},"a":{"constructor":1,"prototype":2},"b":[{"__proto__":3}]}',
    );
    expect(checkMetadata(value)).toEqual([
      { path: 'metadata.__proto__', code: 'forbidden_key', message: 'key "__proto__" is not allowed' },
      { path: 'metadata.a.constructor', code: 'forbidden_key', message: 'key "constructor" is not allowed' },
      { path: 'metadata.a.prototype', code: 'forbidden_key', message: 'key "prototype" is not allowed' },
      { path: 'metadata.b.0.__proto__', code: 'forbidden_key', message: 'key "__proto__" is not allowed' },
    ]);
  });

  it('walks into arrays and objects with dotted paths', () => {
    expect(found({ a: [0, { b: ['ok', 'x\u0000'] }], c: { d: null, e: true } })).toEqual([
      'metadata.a.1.b.1:invalid_string',
    ]);
  });
});

describe('event metadata: numbers', () => {
  it('refuses numbers JSON cannot carry', () => {
    expect(
      checkMetadata({ a: Number.POSITIVE_INFINITY, b: Number.NaN, c: Number.NEGATIVE_INFINITY }),
    ).toEqual(
      ['a', 'b', 'c'].map((k) => ({
        path: `metadata.${k}`,
        code: 'invalid_number',
        message: 'number out of range',
      })),
    );
  });

  it('refuses integers beyond 2^53 in either direction, and keeps the ones within', () => {
    const message = 'integer beyond 2^53; send it as a string';
    expect(
      checkMetadata({ a: 2 ** 53, b: -(2 ** 53), c: 2 ** 53 - 1, d: -(2 ** 53 - 1), e: 1.5, f: 0 }),
    ).toEqual([
      { path: 'metadata.a', code: 'invalid_number', message },
      { path: 'metadata.b', code: 'invalid_number', message },
    ]);
  });
});

describe('event metadata: depth', () => {
  it('words the refusal with the limit, at the path that goes too deep', () => {
    const nest = (n: number): unknown => (n === 1 ? {} : { a: nest(n - 1) });
    expect(checkMetadata(nest(17))).toEqual([
      { path: `metadata${'.a'.repeat(16)}`, code: 'too_deep', message: 'nesting deeper than 16' },
    ]);
  });

  it('counts only objects and arrays as nesting, not the values at the deepest level', () => {
    const nest = (n: number, leaf: unknown): unknown => (n === 1 ? { leaf } : { a: nest(n - 1, leaf) });
    for (const leaf of [true, null, 1, 's', []]) {
      expect(found(nest(16, leaf)), JSON.stringify(leaf)).toEqual(
        Array.isArray(leaf) ? [`metadata${'.a'.repeat(15)}.leaf:too_deep`] : [],
      );
    }
  });

  it('does not look inside what is too deep', () => {
    const nest = (n: number): unknown => (n === 1 ? { bad: 'x\u0000' } : { a: nest(n - 1) });
    expect(found(nest(17))).toEqual([`metadata${'.a'.repeat(16)}:too_deep`]);
    expect(found(nest(16))).toEqual([`metadata${'.a'.repeat(15)}.bad:invalid_string`]);
  });
});

describe('event metadata: at most 10 issues', () => {
  it('stops at 10 bad values', () => {
    const value = Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, 'x\u0000']));
    expect(found(value)).toEqual(Array.from({ length: 10 }, (_, i) => `metadata.k${i}:invalid_string`));
  });

  it('stops at 10 bad items of an array', () => {
    const list = Array.from({ length: 15 }, () => 'x\u0000');
    expect(found({ list })).toEqual(
      Array.from({ length: 10 }, (_, i) => `metadata.list.${i}:invalid_string`),
    );
  });

  it('stops at 10 bad keys', () => {
    // Each bad key is reported by the object that holds it; 20,000 of them once made 20,000 issues.
    const inner = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`k${i}\u0000`, 1]));
    expect(found({ a: inner })).toEqual(Array.from({ length: 10 }, () => 'metadata.a:invalid_string'));
    const proto = JSON.parse(
      `{${Array.from({ length: 12 }, (_, i) => `"x${i}":{"__proto__":1}`).join(',')}}`,
    );
    expect(found(proto)).toEqual(
      Array.from({ length: 10 }, (_, i) => `metadata.x${i}.__proto__:forbidden_key`),
    );
  });

  it('stops at 10 issues for a whole event, a bad timestamp included', () => {
    const bad = Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, 'x\u0000']));
    const r = parseEvent({ service: 's', type: 't', timestamp: '2020-01-01T00:00:00Z', metadata: bad }, ctx);
    expect(r.ok ? [] : r.issues.map((i) => `${i.path}:${i.code}`)).toEqual([
      'timestamp:out_of_range',
      ...Array.from({ length: 9 }, (_, i) => `metadata.k${i}:invalid_string`),
    ]);
  });

  it('reports exactly 10 when there are 10', () => {
    const value = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, 'x\u0000']));
    expect(found(value)).toHaveLength(10);
  });
});
