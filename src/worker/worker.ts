import type pg from 'pg';
import type { Logger } from 'pino';
import type { StreamConsumer, StreamEntry } from '../buffer/consumer.ts';
import type { DeadLetterStream } from '../buffer/dead-letter.ts';
import type { WorkerStatusBoard } from '../buffer/worker-status.ts';
import type { SubjectRegistry } from '../compliance/subjects.ts';
import type { Config } from '../config.ts';
import { ping } from '../store/health.repo.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { BatchWriter } from './batch-writer.ts';
import type { DatabaseBreaker } from './breaker.ts';
import type { Checkpoint } from './checkpoint/checkpoint.ts';
import { InFlightBatches } from './in-flight.ts';
import { CheckpointReplays, type ReplaySource } from './replays.ts';
import { StatusReporter } from './status-reporter.ts';

export interface WorkerOptions {
  consumer: StreamConsumer;
  deadLetters: DeadLetterStream;
  pool: pg.Pool;
  breaker: DatabaseBreaker;
  checkpoint: Checkpoint;
  /** Replays checkpoints left by workers that are gone (other directories under CHECKPOINT_DIR). */
  replayOrphans?: ReplaySource;
  statusBoard: WorkerStatusBoard;
  /** Opted-out subjects and erasures in progress: their events are dropped, not stored. */
  subjects?: SubjectRegistry;
  logger: Logger;
  metrics: Metrics;
  config: Pick<
    Config,
    | 'BATCH_SIZE'
    | 'BATCH_MAX_WAIT_MS'
    | 'READ_BLOCK_MS'
    | 'CLAIM_IDLE_MS'
    | 'INSERT_CONCURRENCY'
    | 'MAX_DELIVERIES'
    | 'CHECKPOINT_SPILL_THRESHOLD'
    | 'CHECKPOINT_MIN_FREE_BYTES'
    | 'STREAM_PARTITIONS'
  >;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One member of the `writers` group: reads batches from every partition, inserts each in
 * one statement through the circuit breaker, and acknowledges entries only once their rows
 * are committed or the batch is fsynced in the disk checkpoint. The checkpoint is replayed
 * first whenever the database is reachable again.
 */
export class Worker {
  readonly #o: WorkerOptions;
  #stopping = false;
  #running: Promise<void> | undefined;
  #lastClaim = 0;
  readonly #inFlight = new InFlightBatches();
  readonly #status: StatusReporter;
  readonly #writer: BatchWriter;
  readonly #replays: CheckpointReplays;

  constructor(opts: WorkerOptions) {
    this.#o = opts;
    const stopping = () => this.#stopping;
    const publishStatus = () => void this.publishStatus();
    this.#status = new StatusReporter(opts);
    this.#writer = new BatchWriter({ ...opts, stopping, onCheckpointFailed: publishStatus });
    this.#replays = new CheckpointReplays({ ...opts, stopping, onReplayed: publishStatus });
  }

  /** Starts the loop; resolves once the consumer group exists. */
  async start(): Promise<void> {
    await this.#retry('create consumer groups', () => this.#o.consumer.ensureGroups());
    this.#status.start();
    this.#running = this.#loop();
  }

  /** Finishes the batches in hand (insert or checkpoint, and ack), then stops reading. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#running;
    await this.#status.stop();
  }

  /** Reports breaker and checkpoint state where every API process can read it. */
  publishStatus(): Promise<void> {
    return this.#status.publish();
  }

  async #loop(): Promise<void> {
    const { logger } = this.#o;
    let failures = 0;
    const inFlight = this.#inFlight;
    while (!this.#stopping) {
      try {
        // With nothing in flight no insert would probe the breaker: it would stay open after a
        // cause that went away with the traffic (a slow insert that ended, a burst of errors).
        if (this.#o.breaker.state !== 'closed' && inFlight.size === 0) await this.#probe();
        await this.#replays.runDue(inFlight);
        // Several batches at once only while the database is healthy: during an outage one
        // batch at a time is held, retried or spilled, as with a single batch in flight.
        const limit = this.#o.breaker.state === 'closed' ? this.#o.config.INSERT_CONCURRENCY : 1;
        while (inFlight.size >= limit) await inFlight.one();
        const failed = inFlight.takeFailure();
        if (failed !== undefined) throw failed;
        const batch = await this.#nextBatch();
        if (batch.length > 0) inFlight.start(batch, () => this.#writer.write(batch));
        failures = 0;
      } catch (err) {
        failures++;
        const delay = Math.min(5_000, 100 * 2 ** Math.min(failures, 6));
        logger.error({ err, retryInMs: delay }, 'worker loop failed');
        await sleep(delay);
      }
    }
    await inFlight.all();
    logger.info('worker stopped');
  }

  /**
   * Reclaimed entries of dead consumers first, then new entries, up to BATCH_SIZE or
   * BATCH_MAX_WAIT_MS. Read while other batches are stored: then without blocking, since
   * their acks share the connection and would wait behind a blocked read.
   */
  async #nextBatch(): Promise<StreamEntry[]> {
    const { consumer, config } = this.#o;
    const inFlight = this.#inFlight;
    const batch: StreamEntry[] = [];
    const now = Date.now();
    if (now - this.#lastClaim >= Math.max(100, config.CLAIM_IDLE_MS / 2)) {
      this.#lastClaim = now;
      // This consumer's own pending entries come back too once idle: skip those in flight.
      batch.push(...inFlight.withoutHeld(await consumer.claimIdle(config.CLAIM_IDLE_MS, config.BATCH_SIZE)));
    }
    const deadline = Date.now() + config.BATCH_MAX_WAIT_MS;
    while (batch.length < config.BATCH_SIZE && !this.#stopping) {
      const remaining = deadline - Date.now();
      if (batch.length > 0 && remaining <= 0) break;
      const block =
        inFlight.size > 0
          ? 0
          : batch.length > 0
            ? Math.max(1, Math.min(remaining, config.READ_BLOCK_MS))
            : config.READ_BLOCK_MS;
      const got = await consumer.read(config.BATCH_SIZE - batch.length, block);
      for (const e of got) batch.push(e);
      if (got.length > 0) continue;
      // Nothing new: return to the loop, which also reclaims, replays and scans when idle;
      // with batches in flight, first wait for one of them (or the partial batch's deadline).
      if (inFlight.size === 0) break;
      if (batch.length === 0) {
        await inFlight.one();
        break;
      }
      await inFlight.one(remaining);
    }
    return batch;
  }

  /** `SELECT 1` through the breaker: refused at once while it is open, its probe once it lets one through. */
  async #probe(): Promise<void> {
    const { pool } = this.#o;
    await this.#o.breaker.execute(() => ping(pool)).catch(() => {});
  }

  async #retry(what: string, fn: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (this.#stopping) throw err;
        const delay = Math.min(5_000, 100 * 2 ** Math.min(attempt, 6));
        this.#o.logger.warn({ err, retryInMs: delay }, `${what} failed; retrying`);
        await sleep(delay);
      }
    }
  }
}
