import { describe, expect, it } from 'vitest';
import { parseEvent, type ValidationIssue } from '../../src/events/event.schema.ts';

const ctx = { now: Date.parse('2026-06-15T12:00:00Z'), maxAgeMs: 30 * 86_400_000 };

function issuesOf(input: unknown): ValidationIssue[] {
  const r = parseEvent(input, ctx);
  if (r.ok) throw new Error(`accepted ${JSON.stringify(input)}`);
  return r.issues;
}

const codes = (input: unknown) => issuesOf(input).map((i) => `${i.path}:${i.code}`);

describe('event refusals: what is not an event', () => {
  it.each([
    ['null', null],
    ['an array', [{ service: 's', type: 't' }]],
    ['a string', 'event'],
    ['a number', 1],
  ])('refuses %s as a whole', (_what, input) => {
    expect(issuesOf(input)).toEqual([
      { path: '', code: 'invalid_type', message: 'an event must be a JSON object' },
    ]);
  });
});

describe('event refusals: fields', () => {
  it('calls a missing or null required field required', () => {
    expect(issuesOf({ type: 't' })).toEqual([{ path: 'service', code: 'required', message: 'is required' }]);
    expect(issuesOf({ service: null, type: 't' })).toEqual([
      { path: 'service', code: 'required', message: 'is required' },
    ]);
    expect(codes({})).toEqual(['service:required', 'type:required']);
  });

  it('calls a field of the wrong JSON type invalid_type', () => {
    const [issue] = issuesOf({ service: 5, type: 't' });
    expect(issue).toMatchObject({ path: 'service', code: 'invalid_type' });
    expect(issue?.message).not.toBe('is required');
    expect(codes({ service: 's', type: 't', message: 5, userId: true, id: 7, timestamp: 1 })).toEqual([
      'id:invalid_type',
      'timestamp:invalid_type',
      'userId:invalid_type',
      'message:invalid_type',
    ]);
  });

  it('refuses NUL characters and lone surrogates in every text field', () => {
    for (const bad of ['a\u0000b', 'a\uD800b', '\uDC00']) {
      for (const field of ['type', 'userId', 'message']) {
        expect(
          issuesOf({ service: 's', type: 't', [field]: bad }),
          `${field}: ${JSON.stringify(bad)}`,
        ).toEqual([
          { path: field, code: 'invalid_string', message: 'must be valid Unicode with no NUL characters' },
        ]);
      }
    }
    expect(codes({ service: 'a\u0000', type: 't' })).toContain('service:invalid_string');
  });

  it('accepts any other Unicode text, including pairs of surrogates', () => {
    const r = parseEvent({ service: 's', type: 'é😀\u0001', userId: '用户', message: '😀' }, ctx);
    expect(r.ok && [r.event.type, r.event.userId, r.event.message]).toEqual(['é😀\u0001', '用户', '😀']);
  });

  it('bounds each text field to its length, both ends included', () => {
    const ok = {
      service: 'a'.repeat(64),
      type: 't'.repeat(128),
      userId: 'u'.repeat(256),
      message: 'm'.repeat(1000),
    };
    expect(parseEvent(ok, ctx).ok).toBe(true);
    expect(parseEvent({ service: 'a', type: 't', userId: 'u', message: '' }, ctx).ok).toBe(true);
    expect(
      codes({
        service: 'a'.repeat(65),
        type: 't'.repeat(129),
        userId: 'u'.repeat(257),
        message: 'm'.repeat(1001),
      }),
    ).toEqual(['service:too_long', 'type:too_long', 'userId:too_long', 'message:too_long']);
    expect(codes({ service: '', type: '', userId: '' })).toEqual([
      'service:too_short',
      'service:invalid_format',
      'type:too_short',
      'userId:too_short',
    ]);
  });

  it('words the format refusals', () => {
    expect(issuesOf({ service: 'a b', type: 't' })).toEqual([
      { path: 'service', code: 'invalid_format', message: 'must be 1–64 of A-Z a-z 0-9 . _ -' },
    ]);
    expect(issuesOf({ service: 's', type: 't', id: 'not-a-uuid' })).toEqual([
      { path: 'id', code: 'invalid_format', message: 'must be a UUID' },
    ]);
    expect(issuesOf({ service: 's', type: 't', timestamp: 'yesterday' })).toEqual([
      { path: 'timestamp', code: 'invalid_format', message: 'must be an RFC 3339 date-time' },
    ]);
  });

  it('names each unknown field', () => {
    expect(issuesOf({ service: 's', type: 't', Service: 'x', extra: 1 })).toEqual([
      { path: 'Service', code: 'unknown_field', message: 'unknown field' },
      { path: 'extra', code: 'unknown_field', message: 'unknown field' },
    ]);
  });
});

describe('event refusals: at most 10 issues', () => {
  const unknown = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x${i}`, i]));

  it('reports 10 of many unknown fields, in order', () => {
    const issues = issuesOf({ service: 's', type: 't', ...unknown(25) });
    expect(issues.map((i) => i.path)).toEqual(Array.from({ length: 10 }, (_, i) => `x${i}`));
  });

  it('reports exactly 10 when there are 10', () => {
    expect(issuesOf({ service: 's', type: 't', ...unknown(10) })).toHaveLength(10);
  });

  it('fills what is left of the 10 with unknown fields after the other issues', () => {
    const mixed = { service: 5, type: 5, id: 5, timestamp: 5, ...unknown(12) };
    expect(codes(mixed)).toEqual([
      'id:invalid_type',
      'service:invalid_type',
      'type:invalid_type',
      'timestamp:invalid_type',
      ...Array.from({ length: 6 }, (_, i) => `x${i}:unknown_field`),
    ]);
  });

  it('stops at 10 issues of the fields themselves', () => {
    // Twelve issues before the unknown field: too long, NUL and (service) format in each text.
    const nul = (n: number) => '\u0000'.repeat(n);
    const input = {
      id: 'x',
      service: nul(65),
      type: nul(129),
      timestamp: 'x',
      userId: nul(257),
      message: nul(1001),
    };
    expect(codes({ ...input, extra: 1 })).toEqual([
      'id:invalid_format',
      'service:too_long',
      'service:invalid_string',
      'service:invalid_format',
      'type:too_long',
      'type:invalid_string',
      'timestamp:invalid_format',
      'userId:too_long',
      'userId:invalid_string',
      'message:too_long',
    ]);
  });
});
