import { describe, expect, it } from 'vitest';
import { parseEvent } from '../../src/events/event.schema.ts';

// A receive time and retention wide enough for every date below (1999 to 2100).
const ctx = { now: Date.parse('2101-01-01T00:00:00Z'), maxAgeMs: 102 * 366 * 86_400_000 };

/** The stored timestamp, or the issue code the timestamp was refused with. */
function outcome(timestamp: string): string | undefined {
  const r = parseEvent({ service: 's', type: 't', timestamp }, ctx);
  return r.ok ? r.event.timestamp : r.issues[0]?.code;
}

describe('event timestamps: days of the calendar', () => {
  const lastDay = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

  it('accepts the first and last day of every month and refuses the day after', () => {
    lastDay.forEach((days, i) => {
      const mm = String(i + 1).padStart(2, '0');
      expect(outcome(`2026-${mm}-01T00:00:00Z`)).toBe(`2026-${mm}-01T00:00:00.000Z`);
      expect(outcome(`2026-${mm}-${days}T00:00:00Z`)).toBe(`2026-${mm}-${days}T00:00:00.000Z`);
      expect(outcome(`2026-${mm}-${days + 1}T00:00:00Z`), `2026-${mm}-${days + 1}`).toBe('invalid_format');
    });
  });

  it('refuses month 00 and 13 and day 00', () => {
    expect(outcome('2026-00-10T00:00:00Z')).toBe('invalid_format');
    expect(outcome('2026-13-10T00:00:00Z')).toBe('invalid_format');
    expect(outcome('2026-06-00T00:00:00Z')).toBe('invalid_format');
  });

  it('has 29 February in leap years only: every 4th year, except centuries not divisible by 400', () => {
    expect(outcome('2024-02-29T00:00:00Z')).toBe('2024-02-29T00:00:00.000Z');
    expect(outcome('2000-02-29T00:00:00Z')).toBe('2000-02-29T00:00:00.000Z');
    expect(outcome('2026-02-29T00:00:00Z')).toBe('invalid_format');
    expect(outcome('2100-02-29T00:00:00Z')).toBe('invalid_format');
    expect(outcome('2024-02-30T00:00:00Z')).toBe('invalid_format');
    // Leap years have no longer months other than February.
    expect(outcome('2024-04-31T00:00:00Z')).toBe('invalid_format');
    expect(outcome('2024-01-31T00:00:00Z')).toBe('2024-01-31T00:00:00.000Z');
  });
});

describe('event timestamps: RFC 3339 forms', () => {
  it('accepts a space or a lower-case t as the separator and a lower-case z', () => {
    expect(outcome('2026-06-15 13:30:00.25Z')).toBe('2026-06-15T13:30:00.250Z');
    expect(outcome('2026-06-15 13:30:00+02:00')).toBe('2026-06-15T11:30:00.000Z');
    expect(outcome('2026-06-15t13:30:00z')).toBe('2026-06-15T13:30:00.000Z');
  });

  it('keeps the calendar check for the space form', () => {
    expect(outcome('2026-02-30 00:00:00Z')).toBe('invalid_format');
    expect(outcome('2024-02-29 00:00:00Z')).toBe('2024-02-29T00:00:00.000Z');
  });

  it('refuses a date without a time, a time without a zone, and other texts', () => {
    const texts = ['2026-06-15', '2026-06-15T13:30:00', '2026-06-15T13:30Z', 'x2026-06-15T13:30:00Z'];
    // Date.parse reads ECMAScript's six-digit years; RFC 3339 has four.
    texts.push('+002026-06-15T13:30:00Z', '+000001-06-15T13:30:00Z');
    for (const text of texts) {
      expect(outcome(text), text).toBe('invalid_format');
    }
  });
});

describe('event timestamps: the accepted window', () => {
  const now = Date.parse('2026-06-15T12:00:00Z');
  const window = { now, maxAgeMs: 86_400_000 };
  const issues = (timestamp: string) => {
    const r = parseEvent({ service: 's', type: 't', timestamp }, window);
    return r.ok ? [] : r.issues;
  };

  it('words each refusal', () => {
    expect(issues('2026-06-15T12:05:00.001Z')).toEqual([
      { path: 'timestamp', code: 'out_of_range', message: 'more than 5 minutes in the future' },
    ]);
    expect(issues('2026-06-14T11:59:59.999Z')).toEqual([
      { path: 'timestamp', code: 'out_of_range', message: 'older than the longest retention' },
    ]);
    expect(issues('2026-06-31T00:00:00Z')).toEqual([
      { path: 'timestamp', code: 'invalid_format', message: 'must be an RFC 3339 date-time' },
    ]);
  });

  it('includes both ends', () => {
    expect(issues('2026-06-15T12:05:00Z')).toEqual([]);
    expect(issues('2026-06-14T12:00:00Z')).toEqual([]);
  });
});

describe('event timestamps: the stored form', () => {
  it('keeps a timestamp already in the stored form and writes any other in it', () => {
    expect(outcome('2026-12-05T06:00:00.123Z')).toBe('2026-12-05T06:00:00.123Z');
    expect(outcome('2026-12-05T06:00:00.123z')).toBe('2026-12-05T06:00:00.123Z');
    expect(outcome('2026-12-05 06:00:00.123Z')).toBe('2026-12-05T06:00:00.123Z');
    expect(outcome('2026-12-05T07:00:00.123+01:00')).toBe('2026-12-05T06:00:00.123Z');
    expect(outcome('2026-12-05T06:00:00.1234Z')).toBe('2026-12-05T06:00:00.123Z');
    expect(outcome('2026-12-05T06:00:00.12Z')).toBe('2026-12-05T06:00:00.120Z');
  });

  it('writes hour 24 as the next day’s midnight, not as sent', () => {
    expect(outcome('2026-12-05T24:00:00.000Z')).toBe('2026-12-06T00:00:00.000Z');
  });
});
