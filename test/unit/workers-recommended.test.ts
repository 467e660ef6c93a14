import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { parseStreamInfo, WorkerDemand } from '../../src/telemetry/autoscale-metrics.ts';
import { type BacklogSample, recommendWorkers } from '../../src/telemetry/workers-recommended.ts';

const STEP_MS = 5_000;

interface Phase {
  /** How long this phase lasts. */
  seconds: number;
  /** Events added per second. */
  ingest: number;
  /** Events stored per second (capped so the backlog never goes below zero). */
  drain: number;
  workers: number;
  /** Added to the backlog of every other sample: batches in hand come and go. */
  jitter?: number;
}

/** Samples every 5 s through the phases, from an initial backlog; `added` undefined when `noAdded`. */
function simulate(phases: Phase[], start = { backlog: 0 }, noAdded = false): BacklogSample[] {
  const samples: BacklogSample[] = [];
  let at = 0;
  let backlog = start.backlog;
  let added = 1_000_000;
  let odd = false;
  samples.push({ at, backlog, added: noAdded ? undefined : added, workers: phases[0]?.workers ?? 0 });
  for (const p of phases) {
    for (let t = 0; t < p.seconds; t += STEP_MS / 1000) {
      at += STEP_MS;
      const inflow = p.ingest * (STEP_MS / 1000);
      const outflow = Math.min(backlog + inflow, p.drain * (STEP_MS / 1000));
      added += inflow;
      backlog += inflow - outflow;
      odd = !odd;
      const seen = backlog + (odd ? (p.jitter ?? 0) : 0);
      samples.push({
        at,
        backlog: seen,
        added: noAdded ? undefined : added + (odd ? (p.jitter ?? 0) : 0),
        workers: p.workers,
      });
    }
  }
  return samples;
}

describe('tributary_workers_recommended: sequences of samples → workers', () => {
  it('holds the current count, at least 1, until the samples span enough time', () => {
    expect(recommendWorkers([])).toEqual({ workers: 1, reason: 'warming up' });
    const short = simulate([{ seconds: 5, ingest: 10_000, drain: 1_000, workers: 3 }]);
    expect(recommendWorkers(short)).toMatchObject({ workers: 3, reason: 'warming up' });
  });

  it('asks for one worker when none is live, whatever the backlog', () => {
    const none = simulate([{ seconds: 60, ingest: 5_000, drain: 0, workers: 0 }]);
    expect(recommendWorkers(none)).toMatchObject({ workers: 1, reason: 'no workers' });
  });

  it('keeps the count while the workers keep up with batches in hand', () => {
    const steady = simulate([{ seconds: 120, ingest: 5_000, drain: 5_000, workers: 3, jitter: 3_000 }]);
    const r = recommendWorkers(steady);
    expect(r).toMatchObject({ workers: 3, reason: 'keeping up' });
    expect(r.ingestPerSecond).toBeCloseTo(5_000, -2);
    expect(r.drainPerSecond).toBeCloseTo(5_000, -2);
  });

  it('sizes a scale-up from the drain rate per worker when the backlog grows', () => {
    // 4 workers storing 2,500/s each against 12,000/s: the backlog grows 2,000/s.
    const growing = simulate([{ seconds: 60, ingest: 12_000, drain: 10_000, workers: 4 }]);
    const r = recommendWorkers(growing);
    // (12,000 + 120,000 / 60) / 2,500 = 5.6 → 6
    expect(r).toMatchObject({ workers: 6, reason: 'falling behind' });
    expect(r.drainPerSecond).toBeCloseTo(10_000, -1);
  });

  it('at most doubles the count in one step', () => {
    const far = simulate([{ seconds: 60, ingest: 50_000, drain: 4_000, workers: 2 }]);
    expect(recommendWorkers(far)).toMatchObject({ workers: 4, reason: 'falling behind' });
  });

  it('scales up a steady backlog that would take longer than 60 s to drain', () => {
    const slow = simulate([{ seconds: 60, ingest: 5_000, drain: 7_000, workers: 4 }], { backlog: 900_000 });
    const r = recommendWorkers(slow);
    expect(r.drainSeconds).toBeGreaterThan(60);
    // (5,000 + 780,000 / 60) / 1,750 = 10.3 → 11, capped at twice 4.
    expect(r).toMatchObject({ workers: 8, reason: 'falling behind' });
  });

  it('keeps the count while a backlog drains within the target', () => {
    const draining = simulate([{ seconds: 60, ingest: 5_000, drain: 15_000, workers: 3 }], {
      backlog: 900_000,
    });
    const r = recommendWorkers(draining);
    expect(r.drainSeconds).toBeLessThan(60);
    expect(r).toMatchObject({ workers: 3, reason: 'keeping up' });
  });

  it('holds the count when nothing drains (database down): more workers would not help', () => {
    const stuck = simulate([{ seconds: 90, ingest: 3_000, drain: 0, workers: 2 }]);
    expect(recommendWorkers(stuck)).toMatchObject({ workers: 2, reason: 'not draining', drainPerSecond: 0 });
  });

  it('steps down by one after five minutes near empty with the same count, never below 1', () => {
    const quiet = simulate([{ seconds: 310, ingest: 400, drain: 400, workers: 4, jitter: 300 }]);
    expect(recommendWorkers(quiet)).toMatchObject({ workers: 3, reason: 'idle' });
    const almost = simulate([{ seconds: 240, ingest: 400, drain: 400, workers: 4 }]);
    expect(recommendWorkers(almost)).toMatchObject({ workers: 4, reason: 'keeping up' });
    const one = simulate([{ seconds: 310, ingest: 0, drain: 0, workers: 1 }]);
    expect(recommendWorkers(one)).toMatchObject({ workers: 1, reason: 'idle' });
  });

  it('counts a busy buffer whose entries wait under a second as near empty', () => {
    // 20,000/s with ~12,000 entries in flight at any moment.
    const busy = simulate([{ seconds: 310, ingest: 20_000, drain: 20_000, workers: 5, jitter: 12_000 }]);
    expect(recommendWorkers(busy)).toMatchObject({ workers: 4, reason: 'idle' });
  });

  it('waits another quiet period after the count changed before stepping down again', () => {
    const afterScaleDown = simulate([
      { seconds: 200, ingest: 400, drain: 400, workers: 4 },
      { seconds: 150, ingest: 400, drain: 400, workers: 3 },
    ]);
    expect(recommendWorkers(afterScaleDown)).toMatchObject({ workers: 3, reason: 'keeping up' });
  });

  it('scales back up when one fewer falls behind', () => {
    const tooFew = simulate([
      { seconds: 300, ingest: 6_000, drain: 6_000, workers: 3 },
      { seconds: 60, ingest: 6_000, drain: 4_000, workers: 2 },
    ]);
    // (6,000 + 120,000 / 60) / 2,000 = 4
    expect(recommendWorkers(tooFew)).toMatchObject({ workers: 4, reason: 'falling behind' });
  });

  it('only the last minute counts for the rates', () => {
    const recovered = simulate([
      { seconds: 120, ingest: 20_000, drain: 2_000, workers: 2 },
      { seconds: 60, ingest: 2_000, drain: 2_000, workers: 2 },
    ]);
    // The old burst left a backlog of ~2.2M that drains at 0 net: far behind, so more workers.
    expect(recommendWorkers(recovered)).toMatchObject({ workers: 4, reason: 'falling behind' });
    expect(recommendWorkers(recovered).ingestPerSecond).toBeCloseTo(2_000, -1);
  });

  it('without the added counter (Redis before 7.0) steps up one at a time on a growing backlog', () => {
    const growing = simulate([{ seconds: 60, ingest: 12_000, drain: 10_000, workers: 4 }], undefined, true);
    expect(recommendWorkers(growing)).toMatchObject({ workers: 5, reason: 'falling behind' });
    const steady = simulate([{ seconds: 60, ingest: 5_000, drain: 5_000, workers: 4 }], undefined, true);
    expect(recommendWorkers(steady)).toMatchObject({ workers: 4, reason: 'keeping up' });
  });
});

describe('WorkerDemand (the API-side sampler)', () => {
  const logger = pino({ level: 'silent' });
  const info = (length: number, added: number) => [
    'length',
    length,
    'radix-tree-keys',
    1,
    'entries-added',
    added,
  ];

  it('parses XINFO STREAM and reads a missing stream as empty', async () => {
    expect(parseStreamInfo(info(7, 90))).toEqual({ length: 7, added: 90 });
    expect(parseStreamInfo(['length', 3])).toEqual({ length: 3, added: undefined });
    const streams: Record<string, unknown[]> = { 's:{0}': info(10, 100) };
    const demand = new WorkerDemand({
      redis: {
        xinfo: async (_sub, key) => {
          const reply = streams[key];
          if (!reply) throw new Error('ERR no such key');
          return reply;
        },
      },
      keys: { streams: ['s:{0}', 's:{1}'] },
      workers: { live: async () => [{}, {}] },
      logger,
    });
    await demand.sample(0);
    streams['s:{1}'] = info(5, 5);
    streams['s:{0}'] = info(0, 200);
    await demand.sample(20_000);
    expect(demand.liveWorkers).toBe(2);
    expect(demand.recommendation()).toMatchObject({
      workers: 2,
      reason: 'keeping up',
      ingestPerSecond: 105 / 20,
      drainPerSecond: 110 / 20,
    });
  });

  it('starts over when the added counter goes back (Redis restarted empty)', () => {
    const demand = new WorkerDemand({
      redis: { xinfo: async () => [] },
      keys: { streams: [] },
      workers: { live: async () => [] },
      logger,
    });
    demand.record({ at: 0, backlog: 0, added: 1_000, workers: 2 });
    demand.record({ at: 30_000, backlog: 500_000, added: 501_000, workers: 2 });
    expect(demand.recommendation()?.reason).toBe('not draining');
    demand.record({ at: 35_000, backlog: 0, added: 0, workers: 2 });
    expect(demand.recommendation()).toMatchObject({ workers: 2, reason: 'warming up' });
  });
});
