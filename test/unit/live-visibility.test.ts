import { describe, expect, it } from 'vitest';
import type { RecordHeader } from '../../src/live/entry.ts';
import { listParam, recordFilter, visibleTo } from '../../src/live/filter.ts';

const operator = { keyId: 'op', services: null };
const teamA = { keyId: 'read-a', services: ['a', 'a2'] };

/** [outcome, service, type, keyId, keyServices] */
const h = (
  service: string | null,
  keyId: string | null = 'writer',
  keyServices: string[] | null = null,
  outcome: RecordHeader[0] = 'accepted',
  type: string | null = 't',
): RecordHeader => [outcome, service, type, keyId, keyServices, 1];

describe('who sees a live record (ARCHITECTURE §11)', () => {
  it('a key with no services sees everything', () => {
    for (const header of [h('a'), h('b'), h(null), h(null, null)])
      expect(visibleTo(operator, header)).toBe(true);
  });

  it('a key with services sees their records and no other service’s', () => {
    expect(visibleTo(teamA, h('a'))).toBe(true);
    expect(visibleTo(teamA, h('a2'))).toBe(true);
    expect(visibleTo(teamA, h('b'))).toBe(false);
  });

  it('a record with no service is seen by the teams of the key that sent it', () => {
    expect(visibleTo(teamA, h(null, 'ingest-a', ['a']))).toBe(true);
    expect(visibleTo(teamA, h(null, 'ingest-ab', ['b', 'a2']))).toBe(true);
    expect(visibleTo(teamA, h(null, 'ingest-b', ['b']))).toBe(false);
    // Sent by a key of every service (or by no key at all): operators only.
    expect(visibleTo(teamA, h(null, 'op-writer', null))).toBe(false);
    expect(visibleTo(teamA, h(null, null, null))).toBe(false);
  });

  it('what a key sent itself, whatever its service', () => {
    expect(visibleTo(teamA, h('b', 'read-a'))).toBe(true);
    expect(visibleTo(teamA, h(null, 'read-a', null))).toBe(true);
  });
});

describe('a listener’s filters', () => {
  const none = { service: [], type: [], outcome: [] };

  it('match everything visible when empty', () => {
    const wanted = recordFilter(teamA, none);
    expect(wanted(h('a'))).toBe(true);
    expect(wanted(h('b'))).toBe(false);
  });

  it('by outcome, type and service, all of them at once', () => {
    const wanted = recordFilter(operator, {
      service: ['a'],
      type: ['t1', 't2'],
      outcome: ['refused', 'duplicate'],
    });
    expect(wanted(h('a', 'w', null, 'refused', 't1'))).toBe(true);
    expect(wanted(h('a', 'w', null, 'duplicate', 't2'))).toBe(true);
    expect(wanted(h('a', 'w', null, 'accepted', 't1'))).toBe(false);
    expect(wanted(h('a', 'w', null, 'refused', 't3'))).toBe(false);
    expect(wanted(h('b', 'w', null, 'refused', 't1'))).toBe(false);
    // A type filter never matches a record whose type is unknown.
    expect(wanted(h('a', 'w', null, 'refused', null))).toBe(false);
  });

  it('a service filter also matches a record with no service sent by a key of that service', () => {
    const wanted = recordFilter(operator, { ...none, service: ['a'] });
    expect(wanted(h(null, 'ingest-a', ['a']))).toBe(true);
    expect(wanted(h(null, 'ingest-b', ['b']))).toBe(false);
    expect(wanted(h(null, 'op-writer', null))).toBe(false);
  });

  it('never shows what visibility hides, whatever the filter asks', () => {
    const wanted = recordFilter(teamA, { ...none, service: ['b'] });
    expect(wanted(h('b'))).toBe(false);
    expect(wanted(h('b', 'read-a'))).toBe(true);
  });

  it('query values: repeated and comma-separated, trimmed, without empties or repeats', () => {
    expect(listParam(undefined)).toEqual([]);
    expect(listParam('a')).toEqual(['a']);
    expect(listParam('a, b,,a')).toEqual(['a', 'b']);
    expect(listParam(['a,b', 'c', ' ', 'b'])).toEqual(['a', 'b', 'c']);
  });
});
