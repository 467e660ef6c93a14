import type pg from 'pg';
import type { Logger } from 'pino';
import type { StreamConsumer, StreamEntry } from '../buffer/consumer.ts';
import type { DeadLetter, DeadLetterStream } from '../buffer/dead-letter.ts';
import { ENTRY_FORMAT_VERSION } from '../buffer/keys.ts';
import type { SubjectRegistry } from '../compliance/subjects.ts';
import type { Config } from '../config.ts';
import { classifyDbError } from '../store/errors.ts';
import { deadLetterReason } from '../telemetry/log-errors.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { currentTraceId, inSpan, linksTo, SpanKind } from '../telemetry/tracing.ts';
import { type DatabaseBreaker, isBreakerOpen } from './breaker.ts';
import { type Checkpoint, CheckpointFailedError } from './checkpoint/checkpoint.ts';
import { insertIsolating } from './persist.ts';
import { type BatchLinks, dropUnwanted, linksToRecord, recordBatchLinks } from './subject-filter.ts';

export interface BatchWriterOptions {
  consumer: StreamConsumer;
  deadLetters: DeadLetterStream;
  pool: pg.Pool;
  breaker: DatabaseBreaker;
  checkpoint: Checkpoint;
  subjects?: SubjectRegistry | undefined;
  logger: Logger;
  metrics: Metrics;
  config: Pick<Config, 'MAX_DELIVERIES' | 'CLAIM_IDLE_MS' | 'CHECKPOINT_SPILL_THRESHOLD'>;
  /** True once the worker is asked to stop: a batch held behind the database is then left pending. */
  stopping: () => boolean;
  /** Called when the checkpoint has failed, so the status board shows it now. */
  onCheckpointFailed: () => void;
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

/** Entries no insert can store (delivered too often, or not an event of this format), and the rest. */
function triage(
  entries: StreamEntry[],
  maxDeliveries: number,
): { poison: DeadLetter[]; candidates: StreamEntry[] } {
  const poison: DeadLetter[] = [];
  const candidates: StreamEntry[] = [];
  for (const entry of entries) {
    if (entry.deliveries > maxDeliveries) {
      poison.push({ entry, error: `delivered ${entry.deliveries} times without being stored` });
    } else if (entry.version !== ENTRY_FORMAT_VERSION || !entry.event?.startsWith('{')) {
      poison.push({ entry, error: `malformed entry (format ${entry.version ?? 'missing'})` });
    } else {
      candidates.push(entry);
    }
  }
  return { poison, candidates };
}

/**
 * One batch from the buffer to its end: stored in PostgreSQL through the breaker (or the
 * disk checkpoint during an outage), refused and poison entries to the dead letters, dropped
 * subjects' events skipped, and only then acknowledged.
 */
export class BatchWriter {
  readonly #o: BatchWriterOptions;

  constructor(opts: BatchWriterOptions) {
    this.#o = opts;
  }

  /** One consumer span per batch, linked to the ingest span of each event it carries. */
  write(entries: StreamEntry[]): Promise<void> {
    return inSpan(
      'tributary.batch',
      {
        kind: SpanKind.CONSUMER,
        links: linksTo(entries.map((e) => e.traceparent)),
        attributes: { 'messaging.system': 'redis', 'messaging.batch.message_count': entries.length },
      },
      () => this.#write(entries),
    );
  }

  async #write(entries: StreamEntry[]): Promise<void> {
    const { subjects, metrics, config } = this.#o;
    const started = performance.now();
    const { poison, candidates } = triage(entries, config.MAX_DELIVERIES);
    const { store, dropped, drops } = await dropUnwanted(
      subjects,
      metrics,
      candidates,
      'buffer',
      (e) => e.event as string,
    );
    const { linking, ...links } = linksToRecord(subjects, store, dropped, drops, (e) => e.event as string);
    const outcome = await this.#persist(store, links, linking);
    if (!outcome) return; // stopping while the database is down: entries stay pending, nothing lost
    const dead = [...poison, ...outcome.refused];
    await this.#settle(dead, outcome.durable, dropped);
    this.#report(entries.length, outcome, dead.length, dropped.length, started);
  }

  /** Dead letters moved (and acknowledged), then every stored or dropped entry acknowledged. */
  async #settle(dead: DeadLetter[], durable: StreamEntry[], dropped: StreamEntry[]): Promise<void> {
    const { consumer, deadLetters, metrics, logger } = this.#o;
    if (dead.length > 0) {
      await deadLetters.move(dead, consumer);
      metrics.eventsDeadLettered.inc(dead.length);
      const first = dead[0]?.error;
      logger.warn(
        { count: dead.length, first: first === undefined ? undefined : deadLetterReason(first) },
        'entries moved to the dead-letter stream',
      );
    }
    if (durable.length + dropped.length > 0) {
      const acked = dropped.length > 0 ? [...durable, ...dropped] : durable;
      await inSpan('tributary.ack', { attributes: { 'messaging.batch.message_count': acked.length } }, () =>
        consumer.ack(acked),
      );
    }
  }

  /** Metrics and the batch's log line. */
  #report(entries: number, outcome: Outcome, deadLettered: number, dropped: number, started: number): void {
    const { metrics, logger } = this.#o;
    if (!outcome.spilled) {
      const now = Date.now();
      for (const e of outcome.durable) {
        metrics.endToEndLatency.observe(Math.max(0, now - Number.parseInt(e.id, 10)) / 1000);
      }
      metrics.eventsPersisted.inc(outcome.inserted);
    }
    metrics.batchSize.observe(entries);
    logger.info(
      {
        traceId: currentTraceId(),
        entries,
        inserted: outcome.inserted,
        alreadyStored: outcome.spilled ? 0 : outcome.durable.length - outcome.inserted,
        checkpointed: outcome.spilled ? outcome.durable.length : 0,
        deadLettered,
        ...(dropped > 0 ? { dropped } : {}),
        ms: Math.round(performance.now() - started),
      },
      'batch',
    );
  }

  /**
   * Stores the batch and the subject links it makes through the breaker. While the database
   * is unavailable the batch is held (its entries touched so no other worker reclaims them)
   * and retried; once the breaker is open and the backlog in Redis passes
   * CHECKPOINT_SPILL_THRESHOLD it goes to the disk checkpoint instead, with the dropped
   * events that make a link (`linking`: they are dropped again on replay, and their links
   * recorded then). Undefined when asked to stop first.
   */
  async #persist(
    entries: StreamEntry[],
    links: BatchLinks,
    linking: StreamEntry[],
  ): Promise<Outcome | undefined> {
    if (entries.length === 0 && links.links.length === 0)
      return { inserted: 0, durable: [], refused: [], spilled: false };
    const { metrics, logger, config } = this.#o;
    const events = entries.map((e) => e.event as string);
    let attempt = 0;
    let touchedAt = Date.now();
    for (;;) {
      try {
        return await this.#insert(entries, events, links);
      } catch (err) {
        const open = isBreakerOpen(err);
        if (!open) {
          const kind = classifyDbError(err);
          metrics.insertFailures.inc({ kind });
          logger.warn({ err, kind, attempt }, 'batch insert failed');
        }
        if (this.#o.stopping()) return undefined;
        const spilled = await this.#spill(entries, [...events, ...linking.map((e) => e.event as string)]);
        if (spilled) return spilled;
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

  /**
   * The links (one statement, only when there are some), then one insert statement, through
   * the breaker; rows refused as data are isolated.
   */
  async #insert(entries: StreamEntry[], events: string[], links: BatchLinks): Promise<Outcome> {
    const { breaker, metrics, pool, subjects } = this.#o;
    const end = metrics.insertDuration.startTimer();
    const result = await inSpan(
      'tributary.insert',
      {
        kind: SpanKind.CLIENT,
        attributes: { 'db.system.name': 'postgresql', 'db.operation.name': 'INSERT', rows: events.length },
      },
      () =>
        breaker.execute(async () => {
          await recordBatchLinks(pool, subjects, links);
          return insertIsolating(pool, events);
        }),
    );
    end();
    const refusedAt = new Map(result.refused.map((r) => [r.index, r.error]));
    return {
      inserted: result.inserted,
      durable: refusedAt.size === 0 ? entries : entries.filter((_, i) => !refusedAt.has(i)),
      refused: result.refused.map((r) => ({ entry: entries[r.index] as StreamEntry, error: r.error })),
      spilled: false,
    };
  }

  /**
   * The batch into the disk checkpoint, when the database is not healthy, the checkpoint
   * works and the backlog in Redis is over CHECKPOINT_SPILL_THRESHOLD; else undefined.
   */
  async #spill(entries: StreamEntry[], events: string[]): Promise<Outcome | undefined> {
    const { breaker, checkpoint } = this.#o;
    if (breaker.state === 'closed' || checkpoint.failed || !(await this.#backlogOverThreshold()))
      return undefined;
    try {
      await inSpan('tributary.checkpoint.write', { attributes: { events: events.length } }, () =>
        checkpoint.append(events),
      );
      return { inserted: 0, durable: entries, refused: [], spilled: true };
    } catch (spillErr) {
      if (!(spillErr instanceof CheckpointFailedError)) throw spillErr;
      this.#o.onCheckpointFailed();
      return undefined;
    }
  }

  async #backlogOverThreshold(): Promise<boolean> {
    const backlog = await this.#o.consumer.backlog().catch(() => 0);
    return backlog > this.#o.config.CHECKPOINT_SPILL_THRESHOLD;
  }
}
