/**
 * How many workers the buffer needs: the pure part of `tributary_workers_recommended`.
 * Samples of the buffer (taken by `autoscale-metrics.ts`) go in, a worker
 * count comes out. No I/O and no clock: the samples carry their own times.
 */

/** The buffer as seen at one moment. */
export interface BacklogSample {
  /** Milliseconds (any clock, the same for every sample). */
  at: number;
  /**
   * Unpersisted entries: the summed lengths of the partition streams. Entries delivered but
   * not yet acknowledged (pending) are still in their stream, so they are part of it.
   */
  backlog: number;
  /**
   * Entries ever added to the partition streams (XINFO STREAM `entries-added`, summed), a
   * counter; undefined when Redis does not report it (before 7.0).
   */
  added: number | undefined;
  /** Live workers (members of the consumer group that reported within the status TTL). */
  workers: number;
}

export interface AutoscalePolicy {
  /** The backlog should drain within this many seconds. */
  targetDrainSeconds: number;
  /** Ingest and drain rates are measured over this window. */
  rateWindowMs: number;
  /** Rates need samples spanning at least this long; until then the count is held. */
  minSpanMs: number;
  /** One worker fewer once the backlog stayed near empty this long with the same workers. */
  scaleDownAfterMs: number;
  /**
   * A backlog this small counts as empty: the batches workers have in hand. So does one of
   * up to a second of ingest (entries wait under a second on average, by Little's law), so a
   * busy buffer whose workers keep up counts as empty too.
   */
  idleBacklog: number;
  /** The most a single recommendation multiplies the current count by, so one odd window cannot ask for 50×. */
  maxScaleUpFactor: number;
}

export const DEFAULT_AUTOSCALE_POLICY: AutoscalePolicy = {
  targetDrainSeconds: 60,
  rateWindowMs: 60_000,
  minSpanMs: 10_000,
  scaleDownAfterMs: 300_000,
  idleBacklog: 1_000,
  maxScaleUpFactor: 2,
};

export type RecommendationReason =
  /** No sample yet, or too short a span to measure rates: the current count (at least 1). */
  | 'warming up'
  /** No live worker: one, whatever the backlog. */
  | 'no workers'
  /** Not growing and drains within the target: the current count. */
  | 'keeping up'
  /** Growing, or would take longer than the target to drain: more. */
  | 'falling behind'
  /** A backlog but nothing drained over the window (database down, breaker open): more workers would not help. */
  | 'not draining'
  /** Near empty for `scaleDownAfterMs` with the same count: one fewer. */
  | 'idle';

export interface Recommendation {
  workers: number;
  reason: RecommendationReason;
  /** Events added to the buffer per second over the window. */
  ingestPerSecond?: number;
  /** Events leaving the buffer (stored, dead-lettered or dropped) per second over the window. */
  drainPerSecond?: number;
  /** Seconds the current backlog takes to drain at that rate (Infinity when nothing drains). */
  drainSeconds?: number;
}

interface Rates {
  spanSeconds: number;
  /** Backlog change per second (positive: growing). */
  growth: number;
  ingest: number | undefined;
  drain: number | undefined;
  /** Mean live workers over the window. */
  workers: number;
}

/** Rates between the first sample of the window and the last one. */
function ratesOver(window: readonly BacklogSample[]): Rates | undefined {
  const first = window[0];
  const last = window.at(-1);
  if (!first || !last || last.at <= first.at) return undefined;
  const spanSeconds = (last.at - first.at) / 1000;
  const growth = (last.backlog - first.backlog) / spanSeconds;
  const ingest =
    first.added !== undefined && last.added !== undefined
      ? (last.added - first.added) / spanSeconds
      : undefined;
  // Everything added either is still in the backlog or has left it: drained = added − growth.
  const drain = ingest === undefined ? undefined : Math.max(0, ingest - growth);
  const workers = window.reduce((sum, s) => sum + s.workers, 0) / window.length;
  return { spanSeconds, growth, ingest, drain, workers };
}

/** Near empty: within the batches in hand, or under a second of ingest. */
function nearEmpty(backlog: number, ingest: number | undefined, p: AutoscalePolicy): boolean {
  return backlog <= Math.max(p.idleBacklog, ingest ?? 0);
}

/**
 * The worker count the buffer needs now, at least 1:
 *
 * - falling behind (the backlog grew by more than "near empty" over the window, or takes
 *   longer than `targetDrainSeconds` to drain): enough workers to absorb ingest and drain
 *   the backlog within the target, `(ingest + backlog / target) / (drain per worker)`,
 *   where a worker's drain rate is measured while they are saturated; at least one more
 *   and at most `maxScaleUpFactor` times the current count;
 * - near empty for `scaleDownAfterMs` while the count stayed the same: one fewer (a
 *   worker's capacity cannot be measured while it idles, so the count steps down one at a
 *   time, and steps back up if the backlog then grows);
 * - otherwise the current count.
 *
 * `samples` are oldest first and may span more than the rate window (the scale-down
 * needs `scaleDownAfterMs` of them).
 */
export function recommendWorkers(
  samples: readonly BacklogSample[],
  policy: AutoscalePolicy = DEFAULT_AUTOSCALE_POLICY,
): Recommendation {
  const last = samples.at(-1);
  if (!last) return { workers: 1, reason: 'warming up' };
  const current = last.workers;
  if (current === 0) return { workers: 1, reason: 'no workers' };

  const window = samples.filter((s) => s.at >= last.at - policy.rateWindowMs);
  const rates = ratesOver(window);
  if (!rates || rates.spanSeconds * 1000 < policy.minSpanMs)
    return { workers: current, reason: 'warming up' };
  const { ingest, drain } = rates;
  const measured = {
    ...(ingest === undefined ? {} : { ingestPerSecond: ingest }),
    ...(drain === undefined ? {} : { drainPerSecond: drain }),
  };

  const quietSince = last.at - policy.scaleDownAfterMs;
  const quietWindow = samples.filter((s) => s.at >= quietSince);
  const quiet =
    (samples[0]?.at ?? last.at) <= quietSince &&
    quietWindow.every((s) => s.workers === current && nearEmpty(s.backlog, ingest, policy));
  if (quiet) {
    return { workers: Math.max(1, current - 1), reason: 'idle', ...measured, drainSeconds: 0 };
  }

  const first = window[0] as BacklogSample;
  const grew = last.backlog - first.backlog > Math.max(policy.idleBacklog, ingest ?? 0);
  // Without the added counter only a shrinking backlog shows a drain rate.
  const drainRate = drain ?? Math.max(0, -rates.growth);
  const drainSeconds =
    last.backlog === 0 ? 0 : drainRate > 0 ? last.backlog / drainRate : Number.POSITIVE_INFINITY;
  const behind = drainSeconds > policy.targetDrainSeconds && !nearEmpty(last.backlog, ingest, policy);
  if (!grew && !behind) return { workers: current, reason: 'keeping up', ...measured, drainSeconds };
  if (drain === 0) {
    return { workers: current, reason: 'not draining', ...measured, drainSeconds };
  }

  const ceiling = Math.max(current + 1, Math.ceil(current * policy.maxScaleUpFactor));
  let wanted = current + 1;
  if (drain !== undefined && ingest !== undefined && drain > 0) {
    const perWorker = drain / Math.max(1, rates.workers);
    wanted = Math.ceil((ingest + last.backlog / policy.targetDrainSeconds) / perWorker);
  }
  const workers = Math.min(ceiling, Math.max(current + 1, wanted));
  return { workers, reason: 'falling behind', ...measured, drainSeconds };
}
