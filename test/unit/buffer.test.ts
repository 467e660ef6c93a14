import { describe, expect, it } from 'vitest';
import { bufferKeys, partitionOfStream } from '../../src/buffer/keys.ts';
import { partitionFor } from '../../src/buffer/partition.ts';

describe('partitionFor', () => {
  it('is stable and within range', () => {
    expect(partitionFor('user-42', 8)).toBe(partitionFor('user-42', 8));
    for (let i = 0; i < 1000; i++) {
      const p = partitionFor(`k${i}`, 8);
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThan(8);
    }
  });

  it('spreads keys evenly', () => {
    const counts = new Array(8).fill(0);
    for (let i = 0; i < 80_000; i++) counts[partitionFor(`user-${i}`, 8)]++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(600);
  });
});

describe('bufferKeys', () => {
  it('names every key under the prefix with per-partition hash tags', () => {
    const keys = bufferKeys('t1', 3);
    expect(keys.streams).toEqual(['t1:events:{0}', 't1:events:{1}', 't1:events:{2}']);
    expect(keys.dedupe(2, 99)).toBe('t1:dedupe:{2}:99');
    expect(keys.deadLetter).toBe('t1:dead');
    expect(partitionOfStream('t1:events:{2}')).toBe(2);
    expect(partitionOfStream('other')).toBe(-1);
  });
});
