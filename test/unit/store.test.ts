import { DrizzleQueryError } from 'drizzle-orm';
import { Redis } from 'ioredis';
import { MaxRetriesPerRequestError } from 'ioredis/built/errors/index.js';
import { describe, expect, it } from 'vitest';
import { classifyDbError } from '../../src/store/errors.ts';
import { decodeCursor, encodeCursor } from '../../src/store/events.repo.ts';
import { monthsBetween, requiredPartitions } from '../../src/store/partitions.ts';

describe('partitions', () => {
  it('names months and bounds them, across a year end', () => {
    expect(monthsBetween(new Date('2026-11-20T00:00:00Z'), new Date('2027-01-03T00:00:00Z'))).toEqual([
      { name: 'events_2026_11', from: '2026-11-01', to: '2026-12-01' },
      { name: 'events_2026_12', from: '2026-12-01', to: '2027-01-01' },
      { name: 'events_2027_01', from: '2027-01-01', to: '2027-02-01' },
    ]);
  });

  it('covers now − retention to now + 2 months', () => {
    const names = requiredPartitions(new Date('2026-03-10T00:00:00Z'), 60).map((p) => p.name);
    expect(names).toEqual([
      'events_2026_01',
      'events_2026_02',
      'events_2026_03',
      'events_2026_04',
      'events_2026_05',
    ]);
  });
});

describe('classifyDbError', () => {
  it('tells availability, data and other failures apart', () => {
    expect(classifyDbError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe('unavailable');
    expect(classifyDbError({ code: '57P01', message: 'terminating connection' })).toBe('unavailable');
    expect(classifyDbError({ code: '53300', message: 'too many clients' })).toBe('unavailable');
    expect(classifyDbError({ code: '08006', message: 'connection failure' })).toBe('unavailable');
    expect(classifyDbError(new Error('Connection terminated unexpectedly'))).toBe('unavailable');
    expect(classifyDbError(new Error('timeout exceeded when trying to connect'))).toBe('unavailable');
    expect(classifyDbError({ code: '22007', message: 'invalid input syntax for type timestamp' })).toBe(
      'data',
    );
    expect(classifyDbError({ code: '22P02', message: 'invalid input syntax for type uuid' })).toBe('data');
    expect(classifyDbError({ code: '23502', message: 'null value' })).toBe('data');
    expect(classifyDbError({ code: '54000', message: 'too large' })).toBe('data');
    expect(classifyDbError({ code: '40P01', message: 'deadlock' })).toBe('transient');
    expect(classifyDbError({ code: '42P01', message: 'relation does not exist' })).toBe('transient');
  });

  it('reads pg and pg-pool connection failures by message', () => {
    for (const message of [
      'Connection terminated',
      'Connection terminated due to connection timeout',
      'Query read timeout',
      'timeout expired',
      'Client has encountered a connection error and is not queryable',
    ]) {
      expect(classifyDbError(new Error(message)), message).toBe('unavailable');
    }
  });

  it('never takes an ioredis error for the database being down', async () => {
    const errors: unknown[] = [
      new Error('Connection is closed.'),
      new MaxRetriesPerRequestError(0),
      new Error("Stream isn't writeable and enableOfflineQueue options is false"),
      new Error("Cluster isn't ready and enableOfflineQueue options is false"),
      new Error("Socket timeout. Expecting data, but didn't receive any in 1000ms."),
      new Error('Command timed out'),
      new Error('None of startup nodes is available'),
      new Error('Connection in subscriber mode, only subscriber commands may be used'),
      Object.assign(new Error('LOADING Redis is loading the dataset in memory'), { name: 'ReplyError' }),
    ];
    // What a real client gives without a connection (the API's fail-fast settings).
    const redis = new Redis({ lazyConnect: true, enableOfflineQueue: false });
    errors.push(await redis.get('k').catch((err: unknown) => err));
    redis.disconnect();
    expect(errors.map((e) => [String(e), classifyDbError(e)])).toEqual(
      errors.map((e) => [String(e), 'transient']),
    );
  });

  it("looks through drizzle's DrizzleQueryError to the pg error it wraps", () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    expect(classifyDbError(new DrizzleQueryError('select 1', [], refused))).toBe('unavailable');
    expect(
      classifyDbError(new DrizzleQueryError('select 1', [], new Error('Connection terminated unexpectedly'))),
    ).toBe('unavailable');
    expect(
      classifyDbError(
        new DrizzleQueryError('insert', [], Object.assign(new Error('dup'), { code: '23505' })),
      ),
    ).toBe('data');
    expect(classifyDbError(new DrizzleQueryError('select 1', [], new Error('Connection is closed.')))).toBe(
      'transient',
    );
  });
});

describe('cursor', () => {
  it('round-trips and refuses anything else', () => {
    const at = { occurredAt: '2026-01-02T03:04:05.123456Z', id: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' };
    expect(decodeCursor(encodeCursor({ ...at, service: 'web.shop-1' }))).toEqual({
      ...at,
      service: 'web.shop-1',
    });
    // Cursors handed out before ids were unique per service only (no service) still work.
    expect(decodeCursor(encodeCursor(at))).toEqual(at);
    const raw = (text: string) => Buffer.from(text).toString('base64url');
    expect(decodeCursor(raw(`${at.occurredAt}|${at.id}|no spaces`))).toBeUndefined();
    expect(decodeCursor(raw(`${at.occurredAt}|${at.id}|`))).toBeUndefined();
    expect(decodeCursor(raw(`${at.occurredAt}|${at.id}|a|b`))).toBeUndefined();
    expect(decodeCursor('garbage')).toBeUndefined();
    expect(decodeCursor(Buffer.from("2026-01-02'; drop|x").toString('base64url'))).toBeUndefined();
  });
});
