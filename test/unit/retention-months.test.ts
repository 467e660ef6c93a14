import { describe, expect, it } from 'vitest';
import { archivePrefix, monthOfPartition, parseMonth } from '../../src/retention/policy.ts';

describe('month labels and partition names', () => {
  it('accepts a month label only as the whole text', () => {
    expect(parseMonth('2026-03').label).toBe('2026-03');
    for (const label of ['x2026-03', ' 2026-03', '2026-03x', '2026-031', '2026-03-01', '12026-03']) {
      expect(() => parseMonth(label), label).toThrow(`"${label}" is not a month (YYYY-MM)`);
    }
  });

  it('recognises a partition name only as the whole name', () => {
    expect(monthOfPartition('events_2026_03')?.label).toBe('2026-03');
    for (const name of ['old_events_2026_03', 'events_2026_03_old', 'events_2026_031', 'xevents_2026_03']) {
      expect(monthOfPartition(name), name).toBeUndefined();
    }
  });
});

describe('archive prefixes', () => {
  it('names one month of every service, or one service of that month', () => {
    const month = parseMonth('2026-03');
    expect(archivePrefix(month)).toBe('events/year=2026/month=03/');
    expect(archivePrefix(month, 'checkout')).toBe('events/year=2026/month=03/service=checkout/');
  });
});
