import { describe, expect, it } from 'vitest';
import type { StreamEntry } from '../../src/buffer/consumer.ts';
import { InFlightBatches } from '../../src/worker/in-flight.ts';

const entry = (partition: number, id: string): StreamEntry => ({
  partition,
  id,
  version: '1',
  event: '{}',
  traceparent: undefined,
  deliveries: 1,
});

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('batches in flight', () => {
  it('keeps entries of a batch in flight out of another batch until it finishes', async () => {
    const batches = new InFlightBatches();
    const store = deferred();
    batches.start([entry(0, '1-0'), entry(1, '1-0')], () => store.promise);
    expect(batches.size).toBe(1);

    const reclaimed = [entry(0, '1-0'), entry(0, '2-0'), entry(1, '1-0')];
    expect(batches.withoutHeld(reclaimed).map((e) => `${e.partition}:${e.id}`)).toEqual(['0:2-0']);

    store.resolve();
    await batches.all();
    expect(batches.size).toBe(0);
    expect(batches.withoutHeld(reclaimed)).toHaveLength(3);
  });

  it('reports the failure of a batch once, after it finished', async () => {
    const batches = new InFlightBatches();
    const failing = deferred();
    const slow = deferred();
    batches.start([entry(0, '1-0')], () => failing.promise);
    batches.start([entry(0, '2-0')], () => slow.promise);
    failing.reject(new Error('ack failed'));
    await batches.one();
    expect(batches.size).toBe(1);
    expect(String(batches.takeFailure())).toContain('ack failed');
    expect(batches.takeFailure()).toBeUndefined();
    slow.resolve();
    await batches.all();
  });

  it('waits for one batch or the timeout, whichever comes first', async () => {
    const batches = new InFlightBatches();
    await batches.one(); // none in flight: at once
    const never = deferred();
    batches.start([entry(0, '1-0')], () => never.promise);
    const started = Date.now();
    await batches.one(20);
    expect(Date.now() - started).toBeGreaterThanOrEqual(15);
    expect(batches.size).toBe(1);
    never.resolve();
    await batches.all();
  });
});
