import { describe, expect, it } from 'vitest';
import { parseEvent } from '../../src/events/event.schema.ts';

const now = Date.parse('2026-06-15T12:00:00Z');
const ctx = { now, maxAgeMs: 30 * 86_400_000 };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function accepted(input: unknown, context = ctx) {
  const r = parseEvent(input, context);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r;
}

describe('event normalisation', () => {
  it('keeps the optional fields that are given, an empty message too, in a fixed order', () => {
    const r = accepted({ metadata: { k: 1 }, message: '', userId: 'u-1', type: 't', service: 's', id: null });
    expect(r.event).toEqual({
      id: expect.stringMatching(UUID),
      service: 's',
      type: 't',
      timestamp: '2026-06-15T12:00:00.000Z',
      receivedAt: '2026-06-15T12:00:00.000Z',
      userId: 'u-1',
      message: '',
      metadata: { k: 1 },
    });
    expect(Object.keys(r.event)).toEqual([
      'id',
      'service',
      'type',
      'timestamp',
      'receivedAt',
      'userId',
      'message',
      'metadata',
    ]);
    expect(r.json).toBe(JSON.stringify(r.event));
  });

  it('keeps an anonymousId right after the userId, under the same rules', () => {
    const r = accepted({ anonymousId: 'a-1', userId: 'u-1', type: 't', service: 's' });
    expect(Object.keys(r.event)).toEqual([
      'id',
      'service',
      'type',
      'timestamp',
      'receivedAt',
      'userId',
      'anonymousId',
    ]);
    expect(r.event.anonymousId).toBe('a-1');
    for (const bad of ['', '..', 'x'.repeat(257), 'a\u0000b', 7]) {
      const refused = parseEvent({ service: 's', type: 't', anonymousId: bad }, ctx);
      expect(refused.ok, JSON.stringify(bad)).toBe(false);
      if (!refused.ok) expect(refused.issues.map((i) => i.path)).toEqual(['anonymousId']);
    }
  });

  it('leaves out the optional fields that are absent or null', () => {
    const r = accepted({
      service: 's',
      type: 't',
      userId: null,
      anonymousId: null,
      message: null,
      metadata: null,
    });
    expect(Object.keys(r.event)).toEqual(['id', 'service', 'type', 'timestamp', 'receivedAt']);
  });

  it('generates a random UUID v4 when no id is given', () => {
    expect(accepted({ service: 's', type: 't' }).event.id).toMatch(UUID);
  });

  it('stamps each event with its own receive time', () => {
    const times = [now, now + 1, now + 1, now - 60_000];
    const stamps = times.map(
      (t) => accepted({ service: 's', type: 't' }, { now: t, maxAgeMs: ctx.maxAgeMs }).event.receivedAt,
    );
    expect(stamps).toEqual([
      '2026-06-15T12:00:00.000Z',
      '2026-06-15T12:00:00.001Z',
      '2026-06-15T12:00:00.001Z',
      '2026-06-15T11:59:00.000Z',
    ]);
  });
});

describe('event size', () => {
  // {"a":"…"} is the string's length plus 8 bytes.
  const withMetadata = (value: string) =>
    parseEvent({ service: 's', type: 't', metadata: { a: value } }, ctx);

  it('accepts metadata of exactly 32 KiB and refuses one byte more', () => {
    expect(withMetadata('x'.repeat(32_768 - 8)).ok).toBe(true);
    const r = withMetadata('x'.repeat(32_768 - 7));
    expect(r.ok ? [] : r.issues).toEqual([
      { path: 'metadata', code: 'too_large', message: 'metadata is larger than 32 KiB' },
    ]);
  });

  it('counts UTF-8 bytes: two-byte characters fill 32 KiB at half the length', () => {
    expect(withMetadata('é'.repeat(16_380)).ok).toBe(true);
    expect(withMetadata('é'.repeat(16_381)).ok).toBe(false);
    // Four bytes and two UTF-16 units each.
    expect(withMetadata('😀'.repeat(8_190)).ok).toBe(true);
    expect(withMetadata('😀'.repeat(8_191)).ok).toBe(false);
  });

  it('does not count the other fields against the metadata', () => {
    const r = parseEvent(
      { service: 's', type: 't'.repeat(128), message: 'm'.repeat(1000), metadata: { a: 'x'.repeat(32_760) } },
      ctx,
    );
    expect(r.ok).toBe(true);
  });
});
