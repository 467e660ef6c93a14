import type { Redis } from 'ioredis';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { bufferKeys } from '../../src/buffer/keys.ts';
import { SubjectRegistry } from '../../src/compliance/subjects.ts';
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
