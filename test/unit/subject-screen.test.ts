import type { Redis } from 'ioredis';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { bufferKeys } from '../../src/buffer/keys.ts';
import { erasureCovers, isSubjectsEvent, SubjectRegistry } from '../../src/compliance/subjects.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';

const registry = () =>
  new SubjectRegistry({
    pool: {} as pg.Pool,
    redis: { publish: async () => 1 } as unknown as Redis,
    subscriber: {} as Redis,
    keys: bufferKeys('t', 1),
    logger: silentLogger(),
  });
const event = (e: Record<string, unknown>) =>
  JSON.stringify({ id: '1', service: 's', type: 't', receivedAt: '2026-01-01T00:00:10.000Z', ...e });

describe('SubjectRegistry.dropReason', () => {
  it('drops only listed subjects, decoding escaped ids and not fooled by a metadata userId', async () => {
    const r = registry();
    await r.publish({
      op: 'erasure',
      userId: 'a"b\\c',
      requestId: 'r1',
      at: Date.parse('2026-01-01T00:00:20Z'),
    });
    await r.publish({ op: 'opt_out', userId: 'opted', at: Date.parse('2026-01-01T00:00:05Z') });
    expect(r.dropReason(event({ userId: 'a"b\\c' }))).toEqual({ reason: 'erased', userId: 'a"b\\c' });
    expect(r.dropReason(event({ userId: 'opted' }))).toEqual({ reason: 'user_opt_out', userId: 'opted' });
    expect(r.dropReason(event({ userId: 'someone' }))).toBeUndefined();
    // A listed id only inside metadata: screened in, then the event's own userId decides.
    expect(r.dropReason(event({ userId: 'someone', metadata: { userId: 'opted' } }))).toBeUndefined();
    expect(r.dropReason(event({ metadata: { userId: 'x' }, userId: 'opted' }))).toEqual({
      reason: 'user_opt_out',
      userId: 'opted',
    });
    // Received after the erasure request: a new event, kept.
    expect(r.dropReason(event({ userId: 'a"b\\c', receivedAt: '2026-01-01T00:00:30.000Z' }))).toBeUndefined();
  });
});

describe('SubjectRegistry: subjects by anonymousId and linked ids (§12)', () => {
  it('drops an event whose anonymousId is erased or opted out, and every linked id of an erasure', async () => {
    const r = registry();
    const at = Date.parse('2026-01-01T00:00:20Z');
    await r.publish({ op: 'erasure', userId: 'u-1', requestId: 'r1', at, linked: ['u-1', 'anon-1'] });
    await r.publish({ op: 'opt_out', userId: 'anon-2', at: Date.parse('2026-01-01T00:00:05Z') });
    expect(r.dropReason(event({ anonymousId: 'anon-1' }))).toEqual({ reason: 'erased', userId: 'anon-1' });
    expect(r.dropReason(event({ userId: 'other', anonymousId: 'anon-1' }))).toEqual({
      reason: 'erased',
      userId: 'anon-1',
    });
    expect(r.dropReason(event({ anonymousId: 'anon-2' }))).toEqual({
      reason: 'user_opt_out',
      userId: 'anon-2',
    });
    expect(
      r.dropReason(event({ anonymousId: 'anon-3', metadata: { anonymousId: 'anon-1' } })),
    ).toBeUndefined();
    expect(r.isOptedOut(undefined, 'anon-2')).toBe(true);
    expect(r.isOptedOut('x', 'anon-3')).toBe(false);
    expect(r.isErased('anon-1')).toBe(true);
    expect(r.isErased('anon-2')).toBe(false);
  });

  it('an opt-in undoes the linked ids its opt-out covered', async () => {
    const r = registry();
    await r.publish({ op: 'opt_out', userId: 'u', at: 0, linked: [{ userId: 'a', at: 0 }] });
    expect(r.isOptedOut(undefined, 'a')).toBe(true);
    await r.publish({ op: 'opt_in', userId: 'u', linked: ['a'] });
    expect(r.isOptedOut('u')).toBe(false);
    expect(r.isOptedOut(undefined, 'a')).toBe(false);
  });
});

describe('erasureCovers and isSubjectsEvent', () => {
  const ids = new Set(['u', 'a']);
  it('match an event by userId or anonymousId, received no later than the request', () => {
    const at = Date.parse('2026-01-01T00:00:20Z');
    expect(erasureCovers(event({ anonymousId: 'a' }), ids, at)).toBe(true);
    expect(erasureCovers(event({ userId: 'u' }), ids, at)).toBe(true);
    expect(erasureCovers(event({ userId: 'x', anonymousId: 'y' }), ids, at)).toBe(false);
    expect(erasureCovers(event({ userId: 'x', metadata: { userId: 'u' } }), ids, at)).toBe(false);
    expect(erasureCovers(event({ anonymousId: 'a', receivedAt: '2026-01-01T00:00:30.000Z' }), ids, at)).toBe(
      false,
    );
    expect(isSubjectsEvent(event({ anonymousId: 'a', receivedAt: '2026-01-01T00:00:30.000Z' }), ids)).toBe(
      true,
    );
    expect(isSubjectsEvent(event({ userId: 'z' }), ids)).toBe(false);
  });
});
