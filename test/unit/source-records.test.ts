import { describe, expect, it } from 'vitest';
import { derivedId, mappingOf, mapRecord, toTimestamp, valueAt } from '../../src/sources/mapping.ts';

const SOURCE = '11111111-2222-4333-8444-555555555555';
const mapping = mappingOf(SOURCE, {
  kind: 'http',
  service: 'shop',
  idField: 'order.id',
  typeField: 'event',
  userIdField: 'customer.id',
  timestampField: 'updated',
});

describe('valueAt', () => {
  it('follows dotted paths through objects and arrays, a key with dots found whole first', () => {
    const r = { a: { b: [{ c: 1 }, { c: 2 }] }, 'x.y': 'whole', x: { y: 'nested' } };
    expect(valueAt(r, 'a.b.1.c')).toBe(2);
    expect(valueAt(r, 'x.y')).toBe('whole');
    expect(valueAt(r, 'a.missing.c')).toBeUndefined();
    expect(valueAt('text', 'length')).toBeUndefined();
    expect(valueAt({ __proto__: { polluted: 1 } }, 'polluted')).toBeUndefined();
  });
});

describe('toTimestamp', () => {
  it.each([
    ['2026-12-01T10:00:00Z', '2026-12-01T10:00:00.000Z'],
    ['2026-12-01 10:00:00.123456+00', '2026-12-01T10:00:00.123Z'],
    ['2026-12-01 12:00:00+02', '2026-12-01T10:00:00.000Z'],
    ['2026-12-01T10:00:00.5+05:30', '2026-12-01T04:30:00.500Z'],
    ['2026-12-01 10:00:00', '2026-12-01T10:00:00.000Z'],
    ['2026-12-01', '2026-12-01T00:00:00.000Z'],
    [1_764_583_200, '2025-12-01T10:00:00.000Z'],
    [1_764_583_200_123, '2025-12-01T10:00:00.123Z'],
    ['1764583200', '2025-12-01T10:00:00.000Z'],
  ])('%s → %s', (input, out) => {
    expect(toTimestamp(input)).toBe(out);
  });
  it.each([['yesterday'], ['2026-13-45'], ['infinity'], [null], [{}], [Number.NaN], [true]])(
    '%s is no time',
    (input) => {
      expect(toTimestamp(input)).toBeUndefined();
    },
  );
});

describe('derivedId', () => {
  it('is a version 8 UUID that changes with any part and with where the parts split', () => {
    const id = derivedId(['s', 'r-1', 'c']);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(derivedId(['s', 'r-1', 'c'])).toBe(id);
    expect(derivedId(['s', 'r-1', 'd'])).not.toBe(id);
    expect(derivedId(['s', 'r-1c', ''])).not.toBe(derivedId(['s', 'r-1', 'c']));
  });
});

describe('mapRecord', () => {
  const record = {
    order: { id: 42 },
    event: 'order.paid',
    customer: { id: 'c-9' },
    updated: '2026-12-01T10:00:00Z',
  };

  it('maps id, type, user and timestamp; the record is the metadata; the id comes from (source, record id, cursor)', () => {
    const out = mapRecord(record, mapping);
    expect(out).toEqual({
      ok: true,
      recordId: '42',
      input: {
        id: derivedId([SOURCE, '42', '2026-12-01T10:00:00Z']),
        service: 'shop',
        type: 'order.paid',
        userId: 'c-9',
        timestamp: '2026-12-01T10:00:00.000Z',
        metadata: record,
      },
    });
  });

  it('the same record read twice is the same id; changed (a new cursor value), a new one', () => {
    const a = mapRecord(record, mapping);
    const b = mapRecord(structuredClone(record), mapping);
    const changed = mapRecord({ ...record, updated: '2026-12-02T10:00:00Z' }, mapping);
    if (!a.ok || !b.ok || !changed.ok) throw new Error('not mapped');
    expect(b.input.id).toBe(a.input.id);
    expect(changed.input.id).not.toBe(a.input.id);
  });

  it('a reader’s own keys (a table’s cursor and id as text) win over the record', () => {
    const out = mapRecord(record, mapping, { cursor: '2026-12-01 10:00:00.000001+00', recordId: '42' });
    if (!out.ok) throw new Error('not mapped');
    expect(out.input.id).toBe(derivedId([SOURCE, '42', '2026-12-01 10:00:00.000001+00']));
  });

  it('names the field at fault, never its value', () => {
    expect(mapRecord({ ...record, order: {} }, mapping)).toEqual({
      ok: false,
      problem: { path: 'order.id', code: 'missing_id', message: 'the record has no id at "order.id"' },
    });
    expect(mapRecord({ ...record, event: '' }, mapping)).toMatchObject({
      ok: false,
      problem: { path: 'event', code: 'missing_type' },
    });
    const bad = mapRecord({ ...record, updated: 'secret-looking value' }, mapping);
    expect(bad).toMatchObject({ ok: false, problem: { path: 'updated', code: 'invalid_timestamp' } });
    expect(JSON.stringify(bad)).not.toContain('secret-looking');
    expect(mapRecord([1, 2], mapping)).toMatchObject({ ok: false, problem: { code: 'invalid_record' } });
    expect(mapRecord(null, mapping)).toMatchObject({ ok: false, problem: { code: 'invalid_record' } });
  });

  it('a fixed type; no timestamp field takes the receive time; no user id leaves it out', () => {
    const hook = mappingOf(SOURCE, { kind: 'webhook', service: 'gh', idField: 'id', type: 'push' });
    const out = mapRecord({ id: 'd-1' }, hook, {}, '2026-12-05T00:00:00.000Z');
    expect(out).toMatchObject({ ok: true, input: { type: 'push', timestamp: '2026-12-05T00:00:00.000Z' } });
    if (!out.ok) throw new Error('not mapped');
    expect(out.input).not.toHaveProperty('userId');
    expect(out.input.id).toBe(derivedId([SOURCE, 'd-1', '']));
  });

  it('a table source times its events by the cursor column unless told otherwise', () => {
    const table = {
      kind: 'postgres' as const,
      service: 's',
      idColumn: 'id',
      type: 't',
      cursorColumn: 'updated_at',
    };
    expect(mappingOf(SOURCE, table).timestamp).toBe('updated_at');
    expect(mappingOf(SOURCE, { ...table, timestampColumn: 'created_at' }).timestamp).toBe('created_at');
  });
});
