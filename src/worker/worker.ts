import type pg from 'pg';
import type { Logger } from 'pino';
import type { StreamConsumer, StreamEntry } from '../buffer/consumer.ts';
import type { DeadLetter, DeadLetterStream } from '../buffer/dead-letter.ts';
import { ENTRY_FORMAT_VERSION } from '../buffer/keys.ts';
import type { Config } from '../config.ts';
import { classifyDbError } from '../store/errors.ts';
import { insertEventsJson } from '../store/events.repo.ts';
import type { Metrics } from '../telemetry/metrics.ts';

export interface WorkerOptions {
  consumer: StreamConsumer;
  deadLetters: DeadLetterStream;
  pool: pg.Pool;
  logger: Logger;
  metrics: Metrics;
  config: Pick<
    Config,
    'BATCH_SIZE' | 'BATCH_MAX_WAIT_MS' | 'READ_BLOCK_MS' | 'CLAIM_IDLE_MS' | 'MAX_DELIVERIES'
  >;
}

interface InsertOutcome {
  inserted: number;
  stored: StreamEntry[];
  refused: DeadLetter[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One member of the `writers` group: reads batches from every partition, inserts each
 * in one statement, and acknowledges entries only after their rows are committed.
 */
export class Worker {
  readonly #o: WorkerOptions;
  #stopping = false;
  #running: Promise<void> | undefined;
  #lastClaim = 0;

  constructor(opts: WorkerOptions) {
    this.#o = opts;
  }

  /** Starts the loop; resolves once the consumer group exists. */
  async start(): Promise<void> {
    await this.#retry('create consumer groups', () => this.#o.consumer.ensureGroups());
    this.#running = this.#loop();
  }

  /** Finishes the batch in hand (insert and ack), then stops reading. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#running;
  }

  async #loop(): Promise<void> {
    const { logger } = this.#o;
    let failures = 0;
    while (!this.#stopping) {
      try {
        const batch = await this.#nextBatch();
        if (batch.length > 0) await this.#process(batch);
        failures = 0;
      } catch (err) {
        failures++;
        const delay = Math.min(5_000, 100 * 2 ** Math.min(failures, 6));
        logger.error({ err: String(err), retryInMs: delay }, 'worker loop failed');
        await sleep(delay);
      }
    }
    logger.info('worker stopped');
  }

  /** Reclaimed entries of dead consumers first, then new entries, up to BATCH_SIZE or BATCH_MAX_WAIT_MS. */
  async #nextBatch(): Promise<StreamEntry[]> {
    const { consumer, config } = this.#o;
    const batch: StreamEntry[] = [];
    const now = Date.now();
    if (now - this.#lastClaim >= Math.max(100, config.CLAIM_IDLE_MS / 2)) {
      this.#lastClaim = now;
      batch.push(...(await consumer.claimIdle(config.CLAIM_IDLE_MS, config.BATCH_SIZE)));
    }
    const deadline = Date.now() + config.BATCH_MAX_WAIT_MS;
    while (batch.length < config.BATCH_SIZE && !this.#stopping) {
      const remaining = deadline - Date.now();
      if (batch.length > 0 && remaining <= 0) break;
      const block =
        batch.length > 0 ? Math.max(1, Math.min(remaining, config.READ_BLOCK_MS)) : config.READ_BLOCK_MS;
      const got = await consumer.read(config.BATCH_SIZE - batch.length, block);
      if (got.length === 0) {
        if (batch.length > 0) break;
        continue;
      }
      batch.push(...got);
    }
    return batch;
  }

  async #process(entries: StreamEntry[]): Promise<void> {
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

    const outcome = await this.#insertUntilDone(candidates);
    if (!outcome) return; // stopping while the database is down: entries stay pending, nothing lost
    const dead = [...poison, ...outcome.refused];
    if (dead.length > 0) {
      await deadLetters.move(dead, consumer);
      metrics.eventsDeadLettered.inc(dead.length);
      logger.warn({ count: dead.length, first: dead[0]?.error }, 'entries moved to the dead-letter stream');
    }
    if (outcome.stored.length > 0) await consumer.ack(outcome.stored);

    const now = Date.now();
    for (const e of outcome.stored) {
      metrics.endToEndLatency.observe(Math.max(0, now - Number(e.id.split('-')[0])) / 1000);
    }
    metrics.eventsPersisted.inc(outcome.inserted);
    metrics.batchSize.observe(entries.length);
    logger.info(
      {
        entries: entries.length,
        inserted: outcome.inserted,
        alreadyStored: outcome.stored.length - outcome.inserted,
        deadLettered: dead.length,
        ms: Math.round(performance.now() - started),
      },
      'batch',
    );
  }

  /** Inserts, retrying with backoff while the database is unavailable. Undefined when stopped first. */
  async #insertUntilDone(entries: StreamEntry[]): Promise<InsertOutcome | undefined> {
    if (entries.length === 0) return { inserted: 0, stored: [], refused: [] };
    let attempt = 0;
    let touchedAt = Date.now();
    for (;;) {
      try {
        const end = this.#o.metrics.insertDuration.startTimer();
        const outcome = await this.#insertIsolating(entries);
        end();
        return outcome;
      } catch (err) {
        attempt++;
        // Capped so the held entries are touched well within CLAIM_IDLE_MS.
        const delay = Math.min(5_000, this.#o.config.CLAIM_IDLE_MS / 3, 50 * 2 ** Math.min(attempt, 7));
        this.#o.logger.warn(
          { err: String(err), kind: classifyDbError(err), attempt, retryInMs: delay },
          'batch insert failed; retrying',
        );
        if (this.#stopping) return undefined;
        await sleep(delay);
        if (Date.now() - touchedAt > this.#o.config.CLAIM_IDLE_MS / 3) {
          await this.#o.consumer.touch(entries).catch(() => {});
          touchedAt = Date.now();
        }
      }
    }
  }

  /**
   * One statement for the batch; when PostgreSQL refuses the data, halves the batch until
   * the refused rows are isolated, so they go to the dead letters and the rest is stored.
   */
  async #insertIsolating(entries: StreamEntry[]): Promise<InsertOutcome> {
    try {
      const inserted = await insertEventsJson(this.#o.pool, `[${entries.map((e) => e.event).join(',')}]`);
      return { inserted, stored: entries, refused: [] };
    } catch (err) {
      if (classifyDbError(err) !== 'data') throw err;
      if (entries.length === 1) {
        const entry = entries[0] as StreamEntry;
        const code = (err as { code?: string }).code ?? '';
        return {
          inserted: 0,
          stored: [],
          refused: [{ entry, error: `${code} ${(err as Error).message}`.trim() }],
        };
      }
      const mid = entries.length >> 1;
      const left = await this.#insertIsolating(entries.slice(0, mid));
      const right = await this.#insertIsolating(entries.slice(mid));
      return {
        inserted: left.inserted + right.inserted,
        stored: [...left.stored, ...right.stored],
        refused: [...left.refused, ...right.refused],
      };
    }
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
