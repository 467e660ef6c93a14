import { describe, expect, it } from 'vitest';
import { entryFields, findNamed, pairs, record } from '../../src/buffer/redis-reply.ts';

describe('flat Redis replies', () => {
  it('pairs names with values, in order', () => {
    expect(pairs(['a', '1', 'b', '2'])).toEqual([
      ['a', '1'],
      ['b', '2'],
    ]);
    expect(record(['a', '1', 'b', '2'])).toEqual({ a: '1', b: '2' });
  });

  it('drops a trailing name without a value (odd length)', () => {
    expect(pairs(['a', '1', 'b'])).toEqual([['a', '1']]);
    expect(record(['a', '1', 'b'])).toEqual({ a: '1' });
    expect(pairs(['only'])).toEqual([]);
  });

  it('keeps values as they are and reads names as text', () => {
    const nested = ['1-0', ['v', '1', 'e', '{}']];
    const buffer = Buffer.from('name');
    expect(record(['length', 3, 'lag', null, 'first-entry', nested, buffer, 'x', 7, 'seven'])).toEqual({
      length: 3,
      lag: null,
      'first-entry': nested,
      name: 'x',
      7: 'seven',
    });
  });

  it('gives nothing for a reply that is not a list', () => {
    for (const reply of [undefined, null, 'OK', 42, { length: 1 }]) {
      expect(pairs(reply)).toEqual([]);
      expect(record(reply)).toEqual({});
    }
  });

  it('lets a repeated name keep its last value, and never touches the prototype', () => {
    expect(record(['a', '1', 'a', '2'])).toEqual({ a: '2' });
    const r = record(['__proto__', 'x']);
    expect(Object.getPrototypeOf(r)).toBe(Object.prototype);
    expect(Object.hasOwn(r, '__proto__')).toBe(true);
  });

  it('reads a stream entry as text fields', () => {
    expect(entryFields(['stream', 'p:events:{1}', 'v', '1', 'deliveries', 3, 'e'])).toEqual({
      stream: 'p:events:{1}',
      v: '1',
      deliveries: '3',
    });
    expect(entryFields(null)).toEqual({});
  });

  it('finds one group of an XINFO GROUPS reply, nested values and all', () => {
    const groups = [
      ['name', 'other', 'consumers', 1, 'pending', 0],
      'garbage',
      ['name', 'writers', 'consumers', 2, 'pending', 5, 'last-delivered-id', '9-1', 'lag', null],
    ];
    expect(findNamed(groups, 'writers')).toEqual({
      name: 'writers',
      consumers: 2,
      pending: 5,
      'last-delivered-id': '9-1',
      lag: null,
    });
    expect(findNamed(groups, 'missing')).toBeUndefined();
    expect(findNamed(undefined, 'writers')).toBeUndefined();
    expect(findNamed([], 'writers')).toBeUndefined();
  });
});
