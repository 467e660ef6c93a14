import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { BufferKeys } from '../buffer/keys.ts';
import { record } from '../buffer/redis-reply.ts';
import {
  type AutoscalePolicy,
  type BacklogSample,
  DEFAULT_AUTOSCALE_POLICY,
  type Recommendation,
  recommendWorkers,
} from './workers-recommended.ts';

/**
 * The one Redis command sampled: `XINFO STREAM key`, per partition. A single-key command,
 * sent one per stream (ioredis pipelines them by itself), so it works on Redis Cluster too.
 */
export interface StreamInfoSource {
  xinfo(subcommand: 'STREAM', key: string): Promise<unknown>;
}

export interface WorkerDemandOptions {
  redis: StreamInfoSource;
  keys: Pick<BufferKeys, 'streams'>;
  /** The live workers (WorkerStatusBoard). */
  workers: { live(): Promise<readonly unknown[]> };
  logger: Logger;
  policy?: AutoscalePolicy;
  /** How often the buffer is sampled. */
  intervalMs?: number;
}

/** `XINFO STREAM` reply (a flat field/value list) → length and entries-added. */
export function parseStreamInfo(reply: unknown): { length: number; added: number | undefined } {
  const fields = record(reply);
  const added = fields['entries-added'];
  return {
    length: Number(fields.length ?? 0),
    added: added === undefined || added === null ? undefined : Number(added),
  };
}

const isNoSuchKey = (err: unknown) => err instanceof Error && /no such key/i.test(err.message);

/**
 * Samples the buffer every few seconds (backlog, entries added, live workers) and keeps
 * enough history for {@link recommendWorkers}: the rate window, or the scale-down wait when
 * longer. Logs each change of the recommendation.
 */
export class WorkerDemand {
  readonly #o: WorkerDemandOptions;
  readonly #policy: AutoscalePolicy;
  readonly #intervalMs: number;
  #samples: BacklogSample[] = [];
  #timer: NodeJS.Timeout | undefined;
  #logged: number | undefined;

  constructor(opts: WorkerDemandOptions) {
    this.#o = opts;
    this.#policy = opts.policy ?? DEFAULT_AUTOSCALE_POLICY;
    this.#intervalMs = opts.intervalMs ?? 5_000;
  }

  start(): void {
    if (this.#timer) return;
    const tick = () => {
      this.sample().catch((err: unknown) => this.#o.logger.debug({ err }, 'buffer sample failed'));
    };
    tick();
    this.#timer = setInterval(tick, this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Reads the streams and the live workers once and records the sample. */
  async sample(now = Date.now()): Promise<void> {
    const { redis, keys, workers } = this.#o;
    const [infos, live] = await Promise.all([
      Promise.all(
        keys.streams.map((key) =>
          redis.xinfo('STREAM', key).then(parseStreamInfo, (err: unknown) => {
            // A partition nothing was ever written to has no stream yet.
            if (isNoSuchKey(err)) return { length: 0, added: 0 };
            throw err;
          }),
        ),
      ),
      workers.live(),
    ]);
    const added = infos.some((i) => i.added === undefined)
      ? undefined
      : infos.reduce((sum, i) => sum + (i.added ?? 0), 0);
    this.record({
      at: now,
      backlog: infos.reduce((sum, i) => sum + i.length, 0),
      added,
      workers: live.length,
    });
  }

  /** Adds a sample and forgets those no rule looks at any more. */
  record(sample: BacklogSample): void {
    const previous = this.#samples.at(-1);
    // The counter went back (Redis restarted empty, keys removed): rates across it mean nothing.
    if (previous?.added !== undefined && sample.added !== undefined && sample.added < previous.added) {
      this.#samples = [];
    }
    this.#samples.push(sample);
    const keepMs = Math.max(this.#policy.rateWindowMs, this.#policy.scaleDownAfterMs) + 2 * this.#intervalMs;
    const firstKept = this.#samples.findIndex((s) => s.at >= sample.at - keepMs);
    if (firstKept > 0) this.#samples.splice(0, firstKept);
    const now = this.recommendation();
    if (now && now.workers !== this.#logged) {
      this.#logged = now.workers;
      this.#o.logger.info(
        { ...now, liveWorkers: sample.workers, backlog: sample.backlog },
        'workers recommended',
      );
    }
  }

  /** The recommendation from the samples so far; undefined before the first one. */
  recommendation(): Recommendation | undefined {
    return this.#samples.length === 0 ? undefined : recommendWorkers(this.#samples, this.#policy);
  }

  /** Live workers in the latest sample. */
  get liveWorkers(): number | undefined {
    return this.#samples.at(-1)?.workers;
  }
}

/**
 * `tributary_workers_recommended` and `tributary_workers_live`, from the API's sampler.
 * Every API process samples the same Redis, so under API_PROCESSES they aggregate with `max`.
 */
export function registerAutoscaleMetrics(registry: Registry, demand: WorkerDemand): void {
  new Gauge({
    name: 'tributary_workers_recommended',
    help:
      'Workers the buffer needs: enough to absorb ingest and drain the backlog within 60 s ' +
      '(rates over the last minute), one fewer after 5 min near empty, at least 1; scale workers on it',
    registers: [registry],
    aggregator: 'max',
    collect() {
      this.reset();
      const r = demand.recommendation();
      if (r) this.set(r.workers);
    },
  });
  new Gauge({
    name: 'tributary_workers_live',
    help: 'Workers that reported to Redis within the last 15 s',
    registers: [registry],
    aggregator: 'max',
    collect() {
      this.reset();
      const n = demand.liveWorkers;
      if (n !== undefined) this.set(n);
    },
  });
}
