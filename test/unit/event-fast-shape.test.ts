import { describe, expect, it } from 'vitest';
import { eventShape, fastShapeOk, parseEvent } from '../../src/events/event.schema.ts';

const GUID = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';
const base = { service: 's', type: 't' };

describe('fast shape check: the common events it takes', () => {
  it.each<[string, Record<string, unknown>]>([
    ['the two required fields', base],
    [
      'every field, each at its longest',
      {
        id: GUID.toUpperCase(),
        service: `A-z_0.9${'x'.repeat(57)}`,
        type: 't'.repeat(128),
        timestamp: '2026-06-15T12:00:00.123+02:00',
        userId: 'u'.repeat(256),
        message: 'm'.repeat(1000),
        metadata: { any: ['thing'] },
      },
    ],
    ['an empty message and the shortest texts', { ...base, id: GUID, userId: 'u', message: '' }],
    [
      'null for every optional field',
      { ...base, id: null, timestamp: null, userId: null, message: null, metadata: null },
    ],
    ['non-ASCII text', { ...base, type: 'é😀', userId: '用户', message: '😀' }],
  ])('takes %s', (_what, input) => {
    expect(eventShape.safeParse(input).success).toBe(true);
    expect(fastShapeOk(input)).toBe(true);
  });
});

describe('fast shape check: what it leaves to the schema', () => {
  it.each<[string, Record<string, unknown>]>([
    ['an unknown field', { ...base, extra: 1 }],
    ['an id that is not a UUID', { ...base, id: 'a0eebc99' }],
    ['an id with text before the UUID', { ...base, id: `x${GUID}` }],
    ['an id with text after the UUID', { ...base, id: `${GUID}x` }],
    ['an id with a non-hex digit', { ...base, id: GUID.replace('a0', 'g0') }],
    ['an id that is a number', { ...base, id: 7 }],
    ['an id in an array', { ...base, id: [GUID] }],
    ['a missing service', { type: 't' }],
    ['an empty service', { ...base, service: '' }],
    ['a service of 65 characters', { ...base, service: 'x'.repeat(65) }],
    ['a service with a space', { ...base, service: 'a b' }],
    ['a service with text after a good name', { ...base, service: 'ok/' }],
    ['a service with text before a good name', { ...base, service: '/ok' }],
    ['a service that is a number', { ...base, service: 1 }],
    ['a missing type', { service: 's' }],
    ['an empty type', { ...base, type: '' }],
    ['a type of 129 characters', { ...base, type: 't'.repeat(129) }],
    ['a type with a NUL', { ...base, type: 'a\u0000' }],
    ['a type with a lone surrogate', { ...base, type: '\uD800' }],
    ['a type that is a number', { ...base, type: 5 }],
    ['a timestamp that is not RFC 3339', { ...base, timestamp: '15 June 2026' }],
    ['a timestamp that is a number', { ...base, timestamp: 1_781_524_800_000 }],
    ['a timestamp in an array', { ...base, timestamp: ['2026-06-15T12:00:00Z'] }],
    ['an empty userId', { ...base, userId: '' }],
    ['a userId of 257 characters', { ...base, userId: 'u'.repeat(257) }],
    ['a userId with a NUL', { ...base, userId: '\u0000' }],
    ['a userId that is a number', { ...base, userId: 42 }],
    ['a message of 1001 characters', { ...base, message: 'm'.repeat(1001) }],
    ['a message with a lone surrogate', { ...base, message: 'a\uDC00' }],
    ['a message that is an object', { ...base, message: {} }],
  ])('leaves %s to the schema, which refuses it', (_what, input) => {
    expect(fastShapeOk(input)).toBe(false);
    expect(eventShape.safeParse(input).success).toBe(false);
  });
});

describe('fast shape check: values that only look like text', () => {
  it('refuses an id or a timestamp inside an array, whose text would match', () => {
    const ctx = { now: Date.parse('2026-06-15T12:00:00Z'), maxAgeMs: 86_400_000 };
    for (const input of [
      { ...base, id: [GUID] },
      { ...base, timestamp: ['2026-06-15T12:00:00Z'] },
    ]) {
      const r = parseEvent(input, ctx);
      expect(r.ok ? [] : r.issues.map((i) => i.code)).toEqual(['invalid_type']);
    }
  });
});
