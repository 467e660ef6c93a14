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
});

describe('cursor', () => {
  it('round-trips and refuses anything else', () => {
    const c = encodeCursor('2026-01-02T03:04:05.123456Z', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    expect(decodeCursor(c)).toEqual({
      occurredAt: '2026-01-02T03:04:05.123456Z',
      id: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    });
    expect(decodeCursor('garbage')).toBeUndefined();
    expect(decodeCursor(Buffer.from("2026-01-02'; drop|x").toString('base64url'))).toBeUndefined();
  });
});
