import { describe, expect, it } from 'vitest';
import type { NormalisedEvent } from '../../src/events/event.schema.ts';
import { decodeEntry, encodeEntry, type RequestPart, type StoredHeader } from '../../src/live/entry.ts';
import { LiveRequest } from '../../src/live/outcomes.ts';
import { BodyBudget } from '../../src/live/publisher.ts';
import { Sampler } from '../../src/live/sampler.ts';

// While someone listens, a busy API ships the body of only so many records of each outcome,
// service and type a second; the rest travel as headers, counted in `stats`, never sent.

describe('the live publisher’s budget of bodies', () => {
  it('gives each outcome, service and type its own allowance a second, so a rare record always has its body', () => {
    const budget = new BodyBudget(3);
    const accepted = Array.from({ length: 10 }, () => budget.take('accepted', 'shop', 'order.paid', 1_000));
    expect(accepted).toEqual([true, true, true, false, false, false, false, false, false, false]);
    expect(budget.take('refused', 'shop', 'order.paid', 1_500)).toBe(true);
    expect(budget.take('accepted', 'shop', 'cart.updated', 1_500)).toBe(true);
    expect(budget.take('accepted', 'billing', 'order.paid', 1_500)).toBe(true);
    expect(budget.take('accepted', 'shop', 'order.paid', 1_999)).toBe(false);
  });

  it('spreads the bodies of a frequent record over the second, at the pace of the second before', () => {
    const budget = new BodyBudget(3);
    for (let i = 0; i < 12; i++) budget.take('accepted', 'shop', 'tick', 1_000 + i);
    // 12 seen last second, 3 allowed: one in four this second.
    const taken = Array.from({ length: 12 }, (_, i) =>
      budget.take('accepted', 'shop', 'tick', 2_000 + i * 80),
    );
    expect(taken.flatMap((t, i) => (t ? [i] : []))).toEqual([0, 4, 8]);
    // After a quiet second it starts from the beginning again.
    expect(budget.take('accepted', 'shop', 'tick', 5_000)).toBe(true);
    expect(budget.take('accepted', 'shop', 'tick', 5_001)).toBe(true);
  });
});

describe('a record without its body', () => {
  it('is in the entry’s headers but has no frame', () => {
    const part: RequestPart = { keyId: 'k', keyServices: null, fields: '"at":"T"' };
    const headers: StoredHeader[] = [
      ['accepted', 's', 't', 0, 0, 'id-0'],
      ['accepted', 's', 't', 0, null, null],
      ['refused', 's', null, 0, 2, null],
    ];
    const data = ['{"id":"id-0"}', '', ',"code":"invalid_event","message":"m"'].join('\n');
    const entry = decodeEntry(
      '1-0',
      encodeEntry([part], headers, data).map((f) => Buffer.from(f)),
    );
    expect(entry?.headers.map((h) => h[0])).toEqual(['accepted', 'accepted', 'refused']);
    expect([0, 1, 2].map((i) => entry?.sendable(i))).toEqual([true, false, true]);
    expect(entry?.frame(1)).toBeUndefined();
    expect(JSON.parse(entry?.frame(2)?.toString() ?? '')).toMatchObject({ code: 'invalid_event', index: 2 });
  });

  it('counts as matching for the sampler and hands its turn to the next record that can be sent', () => {
    const sampler = new Sampler(10, 0);
    // A second of 100 matching records, one in ten with a body: the rate is 0.1.
    for (let i = 0; i < 100; i++) sampler.offer(i * 10, i % 10 === 0);
    sampler.endWindow(1_000);
    expect(sampler.takeChange()).toMatchObject({ rate: 0.1, matchingPerSecond: 100 });
    let kept = 0;
    for (let i = 0; i < 100; i++) if (sampler.offer(1_000 + i * 10, i % 10 === 9)) kept++;
    // Every record with a body is sent: the others passed their turns on.
    expect(kept).toBe(10);
  });
});

describe('the records of one request that go without a body', () => {
  it('share one header per kind, counting them, until the sink writes what it has', () => {
    const published: { header: StoredHeader; rest: string }[] = [];
    let bodies = 1;
    const sink = {
      generation: 0,
      publish: (_: RequestPart, header: StoredHeader, rest: string) => published.push({ header, rest }),
      wantsBody: () => bodies-- > 0,
    };
    const live = new LiveRequest(sink, {
      route: '/v1/events/batch',
      requestId: 'r',
      keyId: 'k',
      keyServices: null,
      at: 0,
    });
    const event = (i: number, type: string) =>
      ({ id: `id-${i}`, service: 's', type, timestamp: 'T', receivedAt: 'T' }) as NormalisedEvent;
    for (let i = 0; i < 5; i++) live.stored(i, 'accepted', event(i, 'a'), `{"i":${i}}`);
    live.stored(5, 'accepted', event(5, 'b'), '{}');
    sink.generation++; // written: the next record of kind a gets a header of its own
    live.stored(6, 'accepted', event(6, 'a'), '{}');
    expect(published).toEqual([
      { header: ['accepted', 's', 'a', 0, 0, 'id-0'], rest: '{"i":0}' },
      { header: ['accepted', 's', 'a', 0, null, null, 4], rest: '' },
      { header: ['accepted', 's', 'b', 0, null, null, 1], rest: '' },
      { header: ['accepted', 's', 'a', 0, null, null, 1], rest: '' },
    ]);
  });
});
