import { describe, expect, it } from 'vitest';
import { Sampler } from '../../src/live/sampler.ts';

/** Offers `perSecond` records spread evenly over one second from `start`; returns those kept and the window's end. */
function second(sampler: Sampler, start: number, perSecond: number): { kept: number[]; end: number } {
  const kept: number[] = [];
  for (let i = 0; i < perSecond; i++) {
    if (sampler.offer(start + Math.floor((i * 1000) / perSecond))) kept.push(i);
  }
  const end = start + 1000;
  sampler.endWindow(end);
  return { kept, end };
}

describe('the live view’s sampler', () => {
  it('keeps everything at or below the maximum, and says nothing', () => {
    const sampler = new Sampler(50, 0);
    const { kept } = second(sampler, 0, 50);
    expect(kept).toHaveLength(50);
    expect(sampler.takeChange()).toBeUndefined();
    expect(sampler.rate).toBe(1);
  });

  it('in a burst keeps the maximum, announces a rate at once, then the rate of the last second', () => {
    const sampler = new Sampler(50, 0);
    let kept = 0;
    for (let i = 0; i < 250; i++) if (sampler.offer(200 + i)) kept++;
    expect(kept).toBe(50);
    const early = sampler.takeChange();
    expect(early?.rate).toBeGreaterThan(0);
    expect(early?.rate).toBeLessThan(1);
    sampler.endWindow(1000);
    expect(sampler.takeChange()).toEqual({ rate: 0.2, matchingPerSecond: 250, maxPerSecond: 50 });
  });

  it('spreads what it keeps evenly: one in 1/rate, never more than the maximum a second', () => {
    const sampler = new Sampler(50, 0);
    let { end } = second(sampler, 0, 250);
    sampler.takeChange();
    const { kept } = second(sampler, end, 250);
    end += 1000;
    expect(kept).toHaveLength(50);
    // Every fifth record, not the first fifty.
    expect(kept.slice(0, 4)).toEqual([4, 9, 14, 19]);
    expect(kept.at(-1)).toBe(249);
    expect(sampler.takeChange()).toBeUndefined();
    // A busier second: the rate in force still caps it at the maximum.
    expect(second(sampler, end, 400).kept).toHaveLength(50);
    expect(sampler.takeChange()).toMatchObject({ rate: 0.13, matchingPerSecond: 400 });
  });

  it('announces a change only when it matters, and stopping', () => {
    const sampler = new Sampler(10, 0);
    let { end } = second(sampler, 0, 100);
    // Estimated from the first tenth of a second (110 a second), then kept: 100 is within a tenth of it.
    expect(sampler.takeChange()?.rate).toBe(0.091);
    ({ end } = second(sampler, end, 105));
    expect(sampler.takeChange()).toBeUndefined();
    expect(sampler.rate).toBe(0.091);
    ({ end } = second(sampler, end, 5));
    expect(sampler.takeChange()).toEqual({ rate: 1, matchingPerSecond: 5, maxPerSecond: 10 });
    expect(second(sampler, end, 10).kept).toHaveLength(10);
  });

  it('never states a rate of 0, however busy', () => {
    const sampler = new Sampler(1, 0);
    second(sampler, 0, 2_000_000);
    expect(sampler.takeChange()?.rate).toBeGreaterThan(0);
  });
});
