import type { StreamConsumer } from '../buffer/consumer.ts';
import type { WorkerStatusBoard } from '../buffer/worker-status.ts';
import type { Config } from '../config.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { memoryReport, volumeSpace } from '../telemetry/resources.ts';
import type { DatabaseBreaker } from './breaker.ts';
import type { Checkpoint } from './checkpoint/checkpoint.ts';

const STATUS_EVERY_MS = 2_000;

export interface StatusReporterOptions {
  consumer: Pick<StreamConsumer, 'name'>;
  breaker: Pick<DatabaseBreaker, 'state' | 'since' | 'trigger' | 'reason'>;
  checkpoint: Pick<Checkpoint, 'stats' | 'dir'>;
  statusBoard: WorkerStatusBoard;
  config: Pick<Config, 'CHECKPOINT_MIN_FREE_BYTES'>;
  metrics: Metrics;
}

/**
 * A worker's breaker and checkpoint state, its checkpoint volume's free space and its memory,
 * published every 2 s (and on every change) to the status board where every API process reads
 * it for `/health`, `/health/database` and readiness.
 */
export class StatusReporter {
  readonly #o: StatusReporterOptions;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: StatusReporterOptions) {
    this.#o = opts;
  }

  /** Publishes now and every STATUS_EVERY_MS until {@link stop}. */
  start(): void {
    this.#timer = setInterval(() => void this.publish(), STATUS_EVERY_MS);
    this.#timer.unref();
    void this.publish();
  }

  /** Stops publishing and removes this worker from the board. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#o.statusBoard.remove(this.#o.consumer.name).catch(() => {});
  }

  /** Publishes the current state; a Redis failure is ignored (the next tick retries). */
  async publish(): Promise<void> {
    const { breaker, checkpoint, statusBoard, consumer, config, metrics } = this.#o;
    const space = await volumeSpace(checkpoint.dir).catch(() => undefined);
    if (space) metrics.checkpointFreeBytes.set(space.freeBytes);
    await statusBoard
      .publish({
        name: consumer.name,
        breaker: breaker.state,
        breakerSince: new Date(breaker.since).toISOString(),
        breakerTrigger: breaker.trigger,
        breakerReason: breaker.reason,
        checkpoint: checkpoint.stats(),
        volume: space && { ...space, low: space.freeBytes < config.CHECKPOINT_MIN_FREE_BYTES },
        memory: await memoryReport(),
        at: new Date().toISOString(),
      })
      .catch(() => {});
  }
}
