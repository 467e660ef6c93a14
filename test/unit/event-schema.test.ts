import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkMetadata, eventShape, fastShapeOk, parseEvent } from '../../src/events/event.schema.ts';

const now = Date.parse('2026-06-15T12:00:00Z');
const ctx = { now, maxAgeMs: 30 * 86_400_000 };

describe('parseEvent', () => {
  it('normalises: lower-case id, UTC millisecond timestamp, receive time, no nulls', () => {
    const r = parseEvent(
      {
        id: 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
        service: 's',
        type: 't',
        timestamp: '2026-06-15T13:30:00.123456+02:00',
        userId: null,
        metadata: { a: [1, 'x', { b: true }] },
      },
      ctx,
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.event).toEqual({
      id: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      service: 's',
      type: 't',
      timestamp: '2026-06-15T11:30:00.123Z',
      receivedAt: '2026-06-15T12:00:00.000Z',
      metadata: { a: [1, 'x', { b: true }] },
    });
    expect(JSON.parse(r.json)).toEqual(r.event);
  });

  it('defaults the timestamp to the receive time and generates ids', () => {
    const a = parseEvent({ service: 's', type: 't' }, ctx);
    const b = parseEvent({ service: 's', type: 't' }, ctx);
    expect(a.ok && b.ok).toBe(true);
    if (!a.ok || !b.ok) return;
    expect(a.event.timestamp).toBe('2026-06-15T12:00:00.000Z');
    expect(a.event.id).not.toBe(b.event.id);
  });

  it('bounds the timestamp to [now − max retention, now + 5 min]', () => {
    const at = (timestamp: string) => parseEvent({ service: 's', type: 't', timestamp }, ctx);
    expect(at('2026-06-15T12:05:00Z').ok).toBe(true);
    expect(at('2026-06-15T12:05:00.001Z').ok).toBe(false);
    expect(at('2026-05-16T12:00:00Z').ok).toBe(true);
    expect(at('2026-05-16T11:59:59Z').ok).toBe(false);
    expect(at('2026-06-15').ok).toBe(false);
    expect(at('2026-06-31T00:00:00Z').ok).toBe(false);
  });

  it('reports every problem with a path and a code', () => {
    const r = parseEvent({ service: 'bad name', type: '', bogus: 1 }, ctx);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const codes = r.issues.map((i) => `${i.path}:${i.code}`);
    expect(codes).toEqual(
      expect.arrayContaining(['service:invalid_format', 'type:too_short', 'bogus:unknown_field']),
    );
  });

  it('measures metadata in bytes, not characters', () => {
    const ascii = parseEvent({ service: 's', type: 't', metadata: { a: 'x'.repeat(32_000) } }, ctx);
    expect(ascii.ok).toBe(true);
    // 17,000 characters, 34,000 bytes of UTF-8.
    const wide = parseEvent({ service: 's', type: 't', metadata: { a: 'é'.repeat(17_000) } }, ctx);
    expect(wide.ok).toBe(false);
    if (!wide.ok) expect(wide.issues[0]).toMatchObject({ path: 'metadata', code: 'too_large' });
  });
});

describe('checkMetadata', () => {
  it('accepts ordinary JSON', () => {
    expect(checkMetadata({ a: 1, b: 'two', c: [null, false, 1.5], d: { e: {} } })).toEqual([]);
  });

  it('finds prototype keys, bad strings and unsafe numbers anywhere', () => {
    const value = JSON.parse(
      '{"x":[{"__proto__":1}],"y":"\\u0000","z":1e400,"w":{"prototype":2},"v":12345678901234567890}',
    );
    const found = checkMetadata(value).map((i) => `${i.path}:${i.code}`);
    expect(found).toEqual([
      'metadata.x.0.__proto__:forbidden_key',
      'metadata.y:invalid_string',
      'metadata.z:invalid_number',
      'metadata.w.prototype:forbidden_key',
      'metadata.v:invalid_number',
    ]);
  });

  it('allows depth 16 and refuses 17', () => {
    const nest = (n: number): unknown => (n === 1 ? {} : { a: nest(n - 1) });
    expect(checkMetadata(nest(16))).toEqual([]);
    expect(checkMetadata(nest(17))[0]?.code).toBe('too_deep');
    const arrays = JSON.parse(`${'['.repeat(20)}${']'.repeat(20)}`);
    expect(checkMetadata({ a: arrays })[0]?.code).toBe('too_deep');
  });
});

describe('fast shape check', () => {
  const field = (valid: fc.Arbitrary<unknown>) =>
    fc.oneof(
      valid,
      fc.constant(null),
      fc.constant(undefined),
      fc.string({ maxLength: 300, unit: 'binary' }),
      fc.constantFrom(
        '',
        '\u0000',
        '\uD800',
        'a'.repeat(65),
        'a'.repeat(129),
        'bad service',
        '2026-02-31T00:00:00Z',
      ),
      fc.integer(),
      fc.boolean(),
      fc.object(),
    );
  const candidate = fc.record(
    {
      id: field(fc.uuid()),
      service: field(fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/)),
      type: field(fc.string({ minLength: 1, maxLength: 128 })),
      timestamp: field(fc.date({ noInvalidDate: true }).map((d) => d.toISOString())),
      userId: field(fc.string({ minLength: 1, maxLength: 256 })),
      message: field(fc.string({ maxLength: 1000 })),
      metadata: field(fc.object()),
      extra: fc.anything(),
      ['__proto__']: fc.anything(),
    },
    { requiredKeys: [] },
  );

  const valid = fc.record(
    {
      id: fc.uuid(),
      service: fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/),
      type: fc.string({ minLength: 1, maxLength: 128 }),
      timestamp: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
      userId: fc.string({ minLength: 1, maxLength: 256 }),
      metadata: fc.object(),
    },
    { requiredKeys: ['service', 'type'] },
  );

  it('accepts only what the schema accepts, and most valid events', () => {
    let fast = 0;
    fc.assert(
      fc.property(fc.oneof(valid, candidate, candidate), (input) => {
        const parsed = JSON.parse(JSON.stringify(input) ?? 'null') as Record<string, unknown>;
        if (typeof parsed !== 'object' || parsed === null) return;
        const ok = fastShapeOk(parsed);
        if (ok) fast++;
        const schema = eventShape.safeParse(parsed).success;
        expect(ok && !schema, JSON.stringify(parsed)).toBe(false);
      }),
      { numRuns: 5_000 },
    );
    expect(fast).toBeGreaterThan(100);
    expect(fastShapeOk({ id: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', service: 's', type: 't' })).toBe(true);
  });

  it('refuses impossible dates whichever path the event takes', () => {
    for (const timestamp of ['2026-02-29T00:00:00Z', '2026-04-31T00:00:00Z', '2026-13-01T00:00:00Z']) {
      const r = parseEvent({ service: 's', type: 't', timestamp }, ctx);
      expect(r.ok ? 'accepted' : r.issues[0]?.code).toBe('invalid_format');
    }
    const leap = parseEvent(
      { service: 's', type: 't', timestamp: '2028-02-29T00:00:00Z' },
      {
        now: Date.parse('2028-03-01T00:00:00Z'),
        maxAgeMs: 30 * 86_400_000,
      },
    );
    expect(leap.ok).toBe(true);
  });
});
