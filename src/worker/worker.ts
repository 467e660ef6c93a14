import type pg from 'pg';
import type { Logger } from 'pino';
import type { StreamConsumer, StreamEntry } from '../buffer/consumer.ts';
import type { DeadLetter, DeadLetterStream } from '../buffer/dead-letter.ts';
import { ENTRY_FORMAT_VERSION } from '../buffer/keys.ts';
import { partitionFor } from '../buffer/partition.ts';
import type { WorkerStatusBoard } from '../buffer/worker-status.ts';
import type { DropReason, SubjectRegistry } from '../compliance/subjects.ts';
import type { Config } from '../config.ts';
import { classifyDbError } from '../store/errors.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { currentTraceId, inSpan, linksTo, SpanKind } from '../telemetry/tracing.ts';
import { type DatabaseBreaker, isBreakerOpen } from './breaker.ts';
import { type Checkpoint, CheckpointFailedError } from './checkpoint/checkpoint.ts';
import { InFlightBatches } from './in-flight.ts';
import { insertIsolating } from './persist.ts';

export interface WorkerOptions {
  consumer: StreamConsumer;
  deadLetters: DeadLetterStream;
  pool: pg.Pool;
  breaker: DatabaseBreaker;
  checkpoint: Checkpoint;
  /** Replays checkpoints left by workers that are gone (other directories under CHECKPOINT_DIR). */
  replayOrphans?: (persist: (events: string[]) => Promise<void>, stop: () => boolean) => Promise<number>;
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
    | 'STREAM_PARTITIONS'
  >;
}

/** Where a batch ended up. */
interface Outcome {
  inserted: number;
  /** Committed in PostgreSQL, or fsynced in the checkpoint: safe to acknowledge. */
  durable: StreamEntry[];
  refused: DeadLetter[];
  spilled: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How often a worker holding a batch behind an open breaker looks again. */
const OPEN_POLL_MS = 250;
const STATUS_EVERY_MS = 2_000;
/** How often a worker looks for checkpoints of workers that are gone. */
const ORPHAN_SCAN_EVERY_MS = 60_000;

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
  #statusTimer: NodeJS.Timeout | undefined;
  #lastOrphanScan = 0;
  readonly #inFlight = new InFlightBatches();

  constructor(opts: WorkerOptions) {
    this.#o = opts;
  }

  /** Starts the loop; resolves once the consumer group exists. */
  async start(): Promise<void> {
    await this.#retry('create consumer groups', () => this.#o.consumer.ensureGroups());
    this.#statusTimer = setInterval(() => void this.publishStatus(), STATUS_EVERY_MS);
    this.#statusTimer.unref();
    void this.publishStatus();
    this.#running = this.#loop();
  }

  /** Finishes the batches in hand (insert or checkpoint, and ack), then stops reading. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#running;
    clearInterval(this.#statusTimer);
    await this.#o.statusBoard.remove(this.#o.consumer.name).catch(() => {});
  }

  /** Reports breaker and checkpoint state where every API process can read it. */
  async publishStatus(): Promise<void> {
    const { breaker, checkpoint, statusBoard, consumer } = this.#o;
    await statusBoard
      .publish({
        name: consumer.name,
        breaker: breaker.state,
        breakerSince: new Date(breaker.since).toISOString(),
        checkpoint: checkpoint.stats(),
        at: new Date().toISOString(),
      })
      .catch(() => {});
  }

  async #loop(): Promise<void> {
    const { logger } = this.#o;
    let failures = 0;
    const inFlight = this.#inFlight;
    while (!this.#stopping) {
      try {
        if (this.#o.checkpoint.hasBacklog && this.#o.breaker.state !== 'open') {
          await inFlight.all();
          await this.#replay('checkpoint', (persist, stop) => this.#o.checkpoint.replay(persist, stop));
        }
        const { replayOrphans } = this.#o;
        if (
          replayOrphans &&
          this.#o.breaker.state === 'closed' &&
          Date.now() - this.#lastOrphanScan > ORPHAN_SCAN_EVERY_MS
        ) {
          this.#lastOrphanScan = Date.now();
          await inFlight.all();
          await this.#replay('orphaned checkpoints', replayOrphans);
        }
        // Several batches at once only while the database is healthy: during an outage one
        // batch at a time is held, retried or spilled, as with a single batch in flight.
        const limit = this.#o.breaker.state === 'closed' ? this.#o.config.INSERT_CONCURRENCY : 1;
        while (inFlight.size >= limit) await inFlight.one();
        const failed = inFlight.takeFailure();
        if (failed !== undefined) throw failed;
        const batch = await this.#nextBatch();
        if (batch.length > 0) inFlight.start(batch, () => this.#process(batch));
        failures = 0;
      } catch (err) {
        failures++;
        const delay = Math.min(5_000, 100 * 2 ** Math.min(failures, 6));
        logger.error({ err: String(err), retryInMs: delay }, 'worker loop failed');
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

  /** One consumer span per batch, linked to the ingest span of each event it carries. */
  #process(entries: StreamEntry[]): Promise<void> {
    return inSpan(
      'tributary.batch',
      {
        kind: SpanKind.CONSUMER,
        links: linksTo(entries.map((e) => e.traceparent)),
        attributes: { 'messaging.system': 'redis', 'messaging.batch.message_count': entries.length },
      },
      () => this.#processBatch(entries),
    );
  }

  async #processBatch(entries: StreamEntry[]): Promise<void> {
    const { consumer, deadLetters, metrics, logger, config } = this.#o;
    const started = performance.now();
    const poison: DeadLetter[] = [];
    const candidates: StreamEntry[] = [];
    for (const entry of entries) {
      if (entry.deliveries > config.MAX_DELIVERIES) {
        poison.push({ entry, error: `delivered ${entry.deliveries} times without being stored` });
      } else if (entry.version !== ENTRY_FORMAT_VERSION || !entry.event?.startsWith('{')) {
        poison.push({ entry, error: `malformed entry (format ${entry.version ?? 'missing'})` });
      } else {
        candidates.push(entry);
      }
    }

    const { store: toStore, dropped } = await this.#dropUnwanted(
      candidates,
      'buffer',
      (e) => e.event as string,
    );
    const outcome = await this.#persist(toStore);
    if (!outcome) return; // stopping while the database is down: entries stay pending, nothing lost

    const dead = [...poison, ...outcome.refused];
    if (dead.length > 0) {
      await deadLetters.move(dead, consumer);
      metrics.eventsDeadLettered.inc(dead.length);
      logger.warn({ count: dead.length, first: dead[0]?.error }, 'entries moved to the dead-letter stream');
    }
    if (outcome.durable.length + dropped.length > 0) {
      const durable = dropped.length > 0 ? [...outcome.durable, ...dropped] : outcome.durable;
      await inSpan('tributary.ack', { attributes: { 'messaging.batch.message_count': durable.length } }, () =>
        consumer.ack(durable),
      );
    }

    if (!outcome.spilled) {
      const now = Date.now();
      for (const e of outcome.durable) {
        metrics.endToEndLatency.observe(Math.max(0, now - Number.parseInt(e.id, 10)) / 1000);
      }
      metrics.eventsPersisted.inc(outcome.inserted);
    }
    metrics.batchSize.observe(entries.length);
    logger.info(
      {
        traceId: currentTraceId(),
        entries: entries.length,
        inserted: outcome.inserted,
        alreadyStored: outcome.spilled ? 0 : outcome.durable.length - outcome.inserted,
        checkpointed: outcome.spilled ? outcome.durable.length : 0,
        deadLettered: dead.length,
        ...(dropped.length > 0 ? { dropped: dropped.length } : {}),
        ms: Math.round(performance.now() - started),
      },
      'batch',
    );
  }

  /**
   * Stores the batch through the breaker. While the database is unavailable the batch is
   * held (its entries touched so no other worker reclaims them) and retried; once the
   * breaker is open and the backlog in Redis passes CHECKPOINT_SPILL_THRESHOLD it goes to
   * the disk checkpoint instead. Undefined when asked to stop first.
   */
  async #persist(entries: StreamEntry[]): Promise<Outcome | undefined> {
    if (entries.length === 0) return { inserted: 0, durable: [], refused: [], spilled: false };
    const { breaker, checkpoint, metrics, logger, config } = this.#o;
    const events = entries.map((e) => e.event as string);
    let attempt = 0;
    let touchedAt = Date.now();
    for (;;) {
      try {
        const end = metrics.insertDuration.startTimer();
        const result = await inSpan(
          'tributary.insert',
          {
            kind: SpanKind.CLIENT,
            attributes: {
              'db.system.name': 'postgresql',
              'db.operation.name': 'INSERT',
              rows: events.length,
            },
          },
          () => breaker.execute(() => insertIsolating(this.#o.pool, events)),
        );
        end();
        const refusedAt = new Map(result.refused.map((r) => [r.index, r.error]));
        return {
          inserted: result.inserted,
          durable: refusedAt.size === 0 ? entries : entries.filter((_, i) => !refusedAt.has(i)),
          refused: result.refused.map((r) => ({ entry: entries[r.index] as StreamEntry, error: r.error })),
          spilled: false,
        };
      } catch (err) {
        const open = isBreakerOpen(err);
        if (!open) {
          const kind = classifyDbError(err);
          metrics.insertFailures.inc({ kind });
          logger.warn({ err: String(err), kind, attempt }, 'batch insert failed');
        }
        if (this.#stopping) return undefined;
        if (breaker.state !== 'closed' && !checkpoint.failed && (await this.#backlogOverThreshold())) {
          try {
            await inSpan('tributary.checkpoint.write', { attributes: { events: events.length } }, () =>
              checkpoint.append(events),
            );
            return { inserted: 0, durable: entries, refused: [], spilled: true };
          } catch (spillErr) {
            if (!(spillErr instanceof CheckpointFailedError)) throw spillErr;
            void this.publishStatus();
          }
        }
        attempt++;
        // Capped so the held entries are touched well within CLAIM_IDLE_MS.
        const backoff = Math.min(5_000, config.CLAIM_IDLE_MS / 3, 50 * 2 ** Math.min(attempt, 7));
        await sleep(open ? Math.min(OPEN_POLL_MS, backoff) : backoff);
        if (Date.now() - touchedAt > config.CLAIM_IDLE_MS / 3) {
          await this.#o.consumer.touch(entries).catch(() => {});
          touchedAt = Date.now();
        }
      }
    }
  }

  async #backlogOverThreshold(): Promise<boolean> {
    const backlog = await this.#o.consumer.backlog().catch(() => 0);
    return backlog > this.#o.config.CHECKPOINT_SPILL_THRESHOLD;
  }

  /**
   * Replays the checkpoint into PostgreSQL through the breaker. Rows the database refuses
   * as data go to the dead letters; if it becomes unavailable again the replay stops and
   * the segment stays, to be replayed (idempotently) later.
   */
  async #replay(
    what: string,
    replay: (persist: (events: string[]) => Promise<void>, stop: () => boolean) => Promise<number>,
  ): Promise<void> {
    const { breaker, metrics, logger, deadLetters } = this.#o;
    const started = Date.now();
    try {
      const replayed = await inSpan(`tributary.checkpoint.replay`, { attributes: { what } }, () =>
        replay(
          async (all) => {
            const { store: events } = await this.#dropUnwanted(all, 'checkpoint', (e) => e);
            const result = await breaker.execute(() => insertIsolating(this.#o.pool, events));
            metrics.eventsPersisted.inc(result.inserted);
            if (result.refused.length > 0) {
              await deadLetters.record(
                result.refused.map((r) => this.#checkpointLetter(events[r.index], r.error)),
              );
              metrics.eventsDeadLettered.inc(result.refused.length);
            }
          },
          () => this.#stopping,
        ),
      );
      if (replayed > 0) logger.info({ replayed, ms: Date.now() - started }, `${what} replayed`);
    } catch (err) {
      if (!isBreakerOpen(err) && classifyDbError(err) === 'data') throw err;
      logger.warn({ err: String(err) }, `${what}: replay paused, database unavailable`);
    } finally {
      void this.publishStatus();
    }
  }

  /**
   * Splits off the events of opted-out subjects and of subjects being erased (counted for
   * their erasure requests); they are acknowledged without being stored.
   */
  async #dropUnwanted<T>(
    items: T[],
    where: 'buffer' | 'checkpoint',
    json: (item: T) => string,
  ): Promise<{ store: T[]; dropped: T[] }> {
    const { subjects, metrics } = this.#o;
    if (!subjects || subjects.empty) return { store: items, dropped: [] };
    const store: T[] = [];
    const dropped: T[] = [];
    const drops: { reason: DropReason; userId: string }[] = [];
    for (const item of items) {
      const drop = subjects.dropReason(json(item));
      if (drop) {
        dropped.push(item);
        drops.push(drop);
      } else store.push(item);
    }
    if (drops.length > 0) {
      for (const d of drops) metrics.eventsSkipped.inc({ reason: d.reason });
      await subjects.recordDrops(drops, where);
    }
    return { store, dropped };
  }

  /** A dead letter for an event replayed from the checkpoint: it is no longer in any stream. */
  #checkpointLetter(event: string | undefined, error: string): DeadLetter {
    let partition = 0;
    try {
      const parsed = JSON.parse(event ?? '{}') as { userId?: string; service?: string };
      partition = partitionFor(parsed.userId ?? parsed.service ?? '', this.#o.config.STREAM_PARTITIONS);
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

  async #retry(what: string, fn: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (this.#stopping) throw err;
        const delay = Math.min(5_000, 100 * 2 ** Math.min(attempt, 6));
        this.#o.logger.warn({ err: String(err), retryInMs: delay }, `${what} failed; retrying`);
        await sleep(delay);
      }
    }
  }
}
