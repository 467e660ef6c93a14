import type pg from 'pg';
import type { Logger } from 'pino';
import type { DeadLetter, DeadLetterStream } from '../buffer/dead-letter.ts';
import { ENTRY_FORMAT_VERSION } from '../buffer/keys.ts';
import { partitionFor, routingKeyOf } from '../buffer/partition.ts';
import type { SubjectRegistry } from '../compliance/subjects.ts';
import type { Config } from '../config.ts';
import { classifyDbError } from '../store/errors.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { inSpan } from '../telemetry/tracing.ts';
import { type DatabaseBreaker, isBreakerOpen } from './breaker.ts';
import type { Checkpoint } from './checkpoint/checkpoint.ts';
import type { InFlightBatches } from './in-flight.ts';
import { insertIsolating } from './persist.ts';
import { dropUnwanted, linksToRecord, recordBatchLinks } from './subject-filter.ts';

/** Feeds stored events to `persist`, oldest first, until done or `stop()`; resolves to the count replayed. */
export type ReplaySource = (
  persist: (events: string[]) => Promise<void>,
  stop: () => boolean,
) => Promise<number>;

export interface CheckpointReplaysOptions {
  deadLetters: DeadLetterStream;
  pool: pg.Pool;
  breaker: DatabaseBreaker;
  checkpoint: Checkpoint;
  /** Replays checkpoints left by workers that are gone (other directories under CHECKPOINT_DIR). */
  replayOrphans?: ReplaySource | undefined;
  subjects?: SubjectRegistry | undefined;
  logger: Logger;
  metrics: Metrics;
  config: Pick<Config, 'STREAM_PARTITIONS'>;
  /** True once the worker is asked to stop: a replay then ends after the segment in hand. */
  stopping: () => boolean;
  /** Called after every replay attempt, so the status board shows the checkpoint as it is now. */
  onReplayed: () => void;
}

/** How often a worker looks for checkpoints of workers that are gone. */
const ORPHAN_SCAN_EVERY_MS = 60_000;

/**
 * When and how checkpointed events go back into PostgreSQL: this worker's own checkpoint as
 * soon as the breaker lets calls through, checkpoints of workers that are gone once a minute
 * while it is closed.
 */
export class CheckpointReplays {
  readonly #o: CheckpointReplaysOptions;
  #lastOrphanScan = 0;

  constructor(opts: CheckpointReplaysOptions) {
    this.#o = opts;
  }

  /** Replays whatever is due, after the batches in flight have finished (older events first). */
  async runDue(inFlight: InFlightBatches): Promise<void> {
    const { checkpoint, breaker, replayOrphans } = this.#o;
    if (checkpoint.hasBacklog && breaker.state !== 'open') {
      await inFlight.all();
      await this.#replay('checkpoint', (persist, stop) => checkpoint.replay(persist, stop));
    }
    if (
      replayOrphans &&
      breaker.state === 'closed' &&
      Date.now() - this.#lastOrphanScan > ORPHAN_SCAN_EVERY_MS
    ) {
      this.#lastOrphanScan = Date.now();
      await inFlight.all();
      await this.#replay('orphaned checkpoints', replayOrphans);
    }
  }

  /**
   * Replays a checkpoint into PostgreSQL through the breaker. Rows the database refuses
   * as data go to the dead letters; if it becomes unavailable again the replay stops and
   * the segment stays, to be replayed (idempotently) later.
   */
  async #replay(what: string, replay: ReplaySource): Promise<void> {
    const { logger } = this.#o;
    const started = Date.now();
    try {
      const replayed = await inSpan(`tributary.checkpoint.replay`, { attributes: { what } }, () =>
        replay((events) => this.#store(events), this.#o.stopping),
      );
      if (replayed > 0) logger.info({ replayed, ms: Date.now() - started }, `${what} replayed`);
    } catch (err) {
      if (!isBreakerOpen(err) && classifyDbError(err) === 'data') throw err;
      logger.warn({ err }, `${what}: replay paused, database unavailable`);
    } finally {
      this.#o.onReplayed();
    }
  }

  /**
   * One segment's events: the subject links they make recorded (dropped events' too, as
   * from the buffer), dropped subjects skipped, the rest inserted, refused rows dead-lettered.
   */
  async #store(all: string[]): Promise<void> {
    const { breaker, metrics, deadLetters, subjects, pool } = this.#o;
    const {
      store: events,
      dropped,
      drops,
    } = await dropUnwanted(subjects, metrics, all, 'checkpoint', (e) => e);
    const { linking: _kept, ...links } = linksToRecord(subjects, events, dropped, drops, (e) => e);
    const result = await breaker.execute(async () => {
      await recordBatchLinks(pool, subjects, links);
      return insertIsolating(pool, events);
    });
    metrics.eventsPersisted.inc(result.inserted);
    if (result.refused.length > 0) {
      await deadLetters.record(result.refused.map((r) => this.#checkpointLetter(events[r.index], r.error)));
      metrics.eventsDeadLettered.inc(result.refused.length);
    }
  }

  /** A dead letter for an event replayed from the checkpoint: it is no longer in any stream. */
  #checkpointLetter(event: string | undefined, error: string): DeadLetter {
    let partition = 0;
    try {
      const parsed = JSON.parse(event ?? '{}') as Parameters<typeof routingKeyOf>[0];
      partition = partitionFor(routingKeyOf(parsed), this.#o.config.STREAM_PARTITIONS);
    } catch {
      // unparsable: partition 0
    }
    return {
      entry: {
        partition,
        id: 'checkpoint',
        version: ENTRY_FORMAT_VERSION,
        event,
        traceparent: undefined,
        deliveries: 1,
      },
      error,
    };
  }
}
