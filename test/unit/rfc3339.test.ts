import { describe, expect, it } from 'vitest';
import { parseRfc3339 } from '../../src/events/rfc3339.ts';

describe('RFC 3339 date-times', () => {
  it('are read with any zone and fraction', () => {
    expect(parseRfc3339('2026-01-02T03:04:05Z')).toBe(Date.parse('2026-01-02T03:04:05Z'));
    expect(parseRfc3339('2026-01-02t03:04:05.123456789z')).toBe(Date.parse('2026-01-02T03:04:05.123Z'));
    expect(parseRfc3339('2026-01-02 03:04:05+02:00')).toBe(Date.parse('2026-01-02T01:04:05Z'));
    expect(parseRfc3339('0001-01-01T00:00:00Z')).toBe(Date.parse('0001-01-01T00:00:00Z'));
    expect(parseRfc3339('9999-12-31T23:59:59.999Z')).toBe(Date.parse('9999-12-31T23:59:59.999Z'));
  });

  it('refuse what Date.parse takes but is not one, or is a date PostgreSQL cannot hold', () => {
    for (const text of [
      '+275760-09-13T00:00:00Z',
      '-000001-01-01T00:00:00Z',
      '0000-01-01T00:00:00Z',
      '0001-01-01T00:00:00+01:00',
      '9999-12-31T23:59:59-01:00',
      '2026-02-31T00:00:00Z',
      '2026-02-29T00:00:00Z',
      '2026-01-01T24:00:00Z',
      '2026-01-01T00:00:60Z',
      '2026-01-01T00:00:00',
      '2026-01-01',
      '2026',
      'Tue, 01 Jan 2030 00:00:00 GMT',
      '2026-01-01T00:00:00+24:00',
      '2026-01-01T00:00:00Z\u0000',
    ]) {
      expect([text, parseRfc3339(text)]).toEqual([text, undefined]);
    }
    expect(parseRfc3339('2024-02-29T00:00:00Z')).toBe(Date.parse('2024-02-29T00:00:00Z'));
  });
});
