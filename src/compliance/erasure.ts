import { hostname } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { ObjectStore } from '../archive/object-store.ts';
import { DeadLetterStream } from '../buffer/dead-letter.ts';
import { type BufferKeys, CONSUMER_GROUP } from '../buffer/keys.ts';
import { partitionFor } from '../buffer/partition.ts';
import type { RedisLike } from '../buffer/redis-client.ts';
import { findNamed } from '../buffer/redis-reply.ts';
import type { WorkerStatusBoard } from '../buffer/worker-status.ts';
import { pseudonymize } from '../events/pseudonym.ts';
import {
  type ClaimedRequest,
  claimRequest,
  completeRequest,
  createErasureRequest,
  type DsarStatus,
  eraseEventsBatch,
  erasureStatus,
  heartbeatRequest,
  recordErasureSubjects,
  recordRequestError,
  requestsToRun,
  startArchivePass,
} from '../store/dsar.repo.ts';
import { eraseMaterialized } from '../store/mat-erase.repo.ts';
import { RetentionBusyError, RunLease } from '../store/run-leases.repo.ts';
import { deleteLinks, linkedSubjects, MAX_LINKED_SUBJECTS } from '../store/subject-links.repo.ts';
import { errorSummary } from '../telemetry/log-errors.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { inSpan } from '../telemetry/tracing.ts';
import { eraseFromArchives } from './archive-erasure.ts';
import { erasureCovers, type SubjectRegistry } from './subjects.ts';

export interface ErasureOptions {
  pool: pg.Pool;
  redis: RedisLike;
  keys: BufferKeys;
  store: ObjectStore;
  subjects: SubjectRegistry;
  workers: WorkerStatusBoard;
  logger: Logger;
  metrics: Metrics;
  workDir: string;
  batchRows: number;
  /** ANONYMIZE_SECRET: pseudonymised rows are found through the same HMAC. */
  anonymizeSecret?: string | undefined;
  /**
   * DSAR_LOCK_TTL_MS: a request, or the retention lease an erasure holds while it rewrites
   * archives, whose holder stopped reporting progress this long ago is taken over.
   */
  staleMs?: number;
}

export type { DsarStatus };

/** DSAR_LOCK_TTL_MS's default, for callers that give no `staleMs`. */
const DEFAULT_STALE_MS = 60_000;

/**
 * Erasure of a data subject, as a resumable background job. The subject is the id asked
 * for and every id linked to it (alias calls, events carrying a userId and an anonymousId:
 * ARCHITECTURE §12); an event is the subject's when its `userId` or its `anonymousId` is
 * one of them. The request is recorded and announced to every process first (workers then
 * drop the subject's buffered events received before it); the job then deletes the
 * subject's rows (under their ids and their HMAC pseudonyms) in batches, waits until every
 * entry that was in the buffer at the time (in any partition) has been through a worker and
 * every checkpoint is replayed, looks for ids linked meanwhile (the links of events that
 * were still buffered are stored by then) and announces and deletes those too, deletes the
 * subject's dead letters, rewrites each archive object holding the subject's rows, sweeps
 * the database once more and deletes the subject's links. Every step is idempotent, so a
 * job that dies is simply run again by any process.
 */
export class ErasureService {
  readonly #o: ErasureOptions;
  /** One TTL for every lease this service takes: the request's row and the retention lease. */
  readonly #staleMs: number;
  readonly #holder = `${hostname()}-${process.pid}`;
  readonly #running = new Set<string>();
  readonly #deadLetters: DeadLetterStream;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: ErasureOptions) {
    this.#o = opts;
    this.#staleMs = opts.staleMs ?? DEFAULT_STALE_MS;
    this.#deadLetters = new DeadLetterStream({ redis: opts.redis, keys: opts.keys });
  }

  async request(userId: string, keyId: string | null): Promise<string> {
    const { pool, redis, keys, subjects } = this.#o;
    // Every partition: an id linked later may have events in any of them.
    const horizons = await Promise.all(
      Array.from(
        { length: keys.partitions },
        async (_, p) => (await redis.xrevrange(keys.stream(p), '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0',
      ),
    );
    const linked = await linkedSubjects(pool, [userId]);
    const { id, at } = await createErasureRequest(pool, userId, keyId, horizons, linked);
    await subjects.publish({ op: 'erasure', userId, requestId: id, at, linked });
    this.#o.metrics.dsarRequests.inc({ kind: 'erasure' });
    void this.run(id);
    return id;
  }

  /** The request as recorded, with the drops counted so far in Redis (workers' go on after completion). */
  async status(id: string): Promise<DsarStatus | undefined> {
    const found = await erasureStatus(this.#o.pool, id);
    if (!found) return undefined;
    const dropped = await this.#o.redis.hgetall(this.#o.keys.dsarDropped(id)).catch(() => ({}));
    const counted = dropped as Record<string, string | undefined>;
    found.deleted.buffer = Math.max(found.deleted.buffer, Number(counted.buffer ?? 0));
    found.deleted.checkpoint = Math.max(found.deleted.checkpoint, Number(counted.checkpoint ?? 0));
    found.deleted.deadLetter = Math.max(found.deleted.deadLetter, Number(counted.deadLetter ?? 0));
    return found;
  }

  /** Picks up pending requests and those whose runner died, every few seconds. */
  startPolling(everyMs = 5_000): void {
    const tick = async () => {
      for (const id of await requestsToRun(this.#o.pool, this.#staleMs)) await this.run(id);
    };
    this.#timer = setInterval(() => void tick().catch(() => {}), everyMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Runs (or resumes) one request if no live runner has it. Never throws. */
  async run(id: string): Promise<void> {
    if (this.#running.has(id)) return;
    this.#running.add(id);
    const { pool, logger } = this.#o;
    let heartbeat: NodeJS.Timeout | undefined;
    try {
      const claimed = await claimRequest(pool, id, this.#staleMs);
      if (!claimed) return;
      heartbeat = setInterval(
        () => void heartbeatRequest(pool, id).catch(() => {}),
        Math.min(5_000, this.#staleMs / 3),
      );
      heartbeat.unref();
      logger.info({ requestId: id }, 'erasure started');
      await inSpan('dsar.erasure', { attributes: { 'tributary.dsar_request': id } }, () =>
        this.#erase(id, claimed),
      );
      logger.info({ requestId: id }, 'erasure completed');
    } catch (err) {
      logger.warn({ requestId: id, err }, 'erasure paused; it will be resumed');
      // Left `running`: the heartbeat stops, and a poller takes it over after DSAR_LOCK_TTL_MS.
      // Kept (GET /v1/dsar/:id) by the same rule as the logs: never the statement's parameters.
      await recordRequestError(pool, id, errorSummary(err)).catch(() => {});
    } finally {
      clearInterval(heartbeat);
      this.#running.delete(id);
    }
  }

  /** The subject's ids and, with ANONYMIZE_SECRET, their pseudonyms (anonymised rows carry those). */
  #withPseudonyms(subjects: readonly string[]): string[] {
    const secret = this.#o.anonymizeSecret;
    return secret ? [...subjects, ...subjects.map((s) => pseudonymize(secret, s))] : [...subjects];
  }

  async #erase(id: string, { userId, progress, at }: ClaimedRequest): Promise<void> {
    const { pool, metrics } = this.#o;
    const recorded = Array.isArray(progress.subjects) ? (progress.subjects as string[]) : [userId];
    await this.#deleteRows(id, this.#withPseudonyms(recorded));
    await this.#waitForBuffer(userId, progress);
    await this.#waitForCheckpoints();
    // Links made by events that were still buffered or checkpointed are stored by now.
    const found = await linkedSubjects(pool, recorded);
    // A worker may have added one meanwhile (an alias call of an erased id, late): kept too.
    const subjects = await recordErasureSubjects(pool, id, found);
    if (subjects.length > recorded.length) {
      await this.#o.subjects.publish({ op: 'erasure', userId, requestId: id, at, linked: subjects });
      this.#o.logger.info(
        { requestId: id, subjects: subjects.length, added: subjects.length - recorded.length },
        'erasure: more linked ids found after the buffer',
      );
    }
    if (found.length >= MAX_LINKED_SUBJECTS) {
      // A chain this long is more likely an id shared by many people (a kiosk's anonymousId)
      // than one person: erased as far as the cap, and said so for an operator to look at.
      this.#o.logger.warn(
        { requestId: id, subjects: subjects.length, cap: MAX_LINKED_SUBJECTS },
        'erasure: linked ids reach the cap; ids beyond it are not erased',
      );
    }
    const ids = this.#withPseudonyms(subjects);
    await this.#deleteRows(id, ids);
    // After the waits: an entry a worker dead-lettered from the buffer or a checkpoint has
    // been moved by now.
    await this.#eraseDeadLetters(id, new Set(subjects), at);
    await startArchivePass(pool, id, subjects.length);
    const archive = await this.#withRetentionLease(() =>
      eraseFromArchives({
        pool,
        store: this.#o.store,
        requestId: id,
        subjectIds: ids,
        workDir: join(this.#o.workDir, `erasure-${id}`),
        logger: this.#o.logger,
      }),
    );
    // Rows an in-flight batch wrote meanwhile.
    await this.#deleteRows(id, ids);
    // The materialisations' rows of every id, once no event of theirs is left to apply.
    const materialized = await eraseMaterialized(pool, id, ids);
    metrics.dsarRowsErased.inc({ place: 'materialized' }, materialized);
    // Links are personal data too; workers write none between two erased ids again.
    await deleteLinks(pool, subjects);
    const dropped = await this.#o.redis.hgetall(this.#o.keys.dsarDropped(id));
    const buffer = Number(dropped.buffer ?? 0);
    const checkpoint = Number(dropped.checkpoint ?? 0);
    const deadLetter = Number(dropped.deadLetter ?? 0);
    if (!(await completeRequest(pool, id, { buffer, checkpoint, deadLetter }, subjects.length))) {
      // A worker linked one more id meanwhile: pending again, for a job to erase it too.
      this.#o.logger.info({ requestId: id }, 'erasure reopened: more linked ids found');
      return;
    }
    metrics.dsarRowsErased.inc({ place: 'buffer' }, buffer);
    metrics.dsarRowsErased.inc({ place: 'checkpoint' }, checkpoint);
    metrics.dsarRowsErased.inc({ place: 'dead_letter' }, deadLetter);
    metrics.dsarRowsErased.inc({ place: 'archive' }, archive.rows);
    await this.#o.subjects.publish({ op: 'erasure_done', userId, requestId: id });
  }

  async #deleteRows(id: string, ids: string[]): Promise<void> {
    const { pool, batchRows, metrics } = this.#o;
    for (;;) {
      // Rows and their count go in one statement, so a job killed between batches
      // neither loses nor double-counts a batch.
      const n = await eraseEventsBatch(pool, id, ids, batchRows);
      if (n === 0) return;
      metrics.dsarRowsErased.inc({ place: 'database' }, n);
    }
  }

  /**
   * Waits until every entry that was in the buffer when the request was made has been
   * delivered and acknowledged (workers drop the subject's ones): in every partition, up to
   * the horizons recorded then. A request from before links recorded one horizon, of the
   * subject's own partition.
   */
  async #waitForBuffer(userId: string, progress: Record<string, unknown>): Promise<void> {
    const { keys } = this.#o;
    if (Array.isArray(progress.bufferHorizons)) {
      const horizons = progress.bufferHorizons as string[];
      for (const [p, horizon] of horizons.entries())
        if (p < keys.partitions) await this.#waitForPartition(p, String(horizon));
      return;
    }
    await this.#waitForPartition(
      partitionFor(userId, keys.partitions),
      String(progress.bufferHorizon ?? '0-0'),
    );
  }

  /** Waits until one partition's workers are past `horizon` with nothing up to it pending. */
  async #waitForPartition(partition: number, horizon: string): Promise<void> {
    const { redis, keys } = this.#o;
    const stream = keys.stream(partition);
    const after = (a: string, b: string) => {
      const [am, as] = a.split('-').map(Number) as [number, number];
      const [bm, bs] = b.split('-').map(Number) as [number, number];
      return am > bm || (am === bm && as >= bs);
    };
    for (;;) {
      const groups = (await redis.xinfo('GROUPS', stream).catch(() => [])) as unknown[][];
      const group = findNamed(groups, CONSUMER_GROUP);
      const delivered = String(group?.['last-delivered-id'] ?? '0-0');
      const pending = (await redis
        .xpending(stream, CONSUMER_GROUP, '-', horizon, 1)
        .catch(() => [])) as unknown[];
      if ((horizon === '0-0' || after(delivered, horizon)) && pending.length === 0) return;
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /**
   * Deletes the subject's dead letters received up to the request (the rule workers apply
   * to the buffer), counted in Redis with the workers' drops. The dead-letter stream is one
   * key, read a page at a time. A replay racing this either finds an entry gone or has
   * moved it back to the buffer, where a worker drops it as erased: it is never stored.
   */
  async #eraseDeadLetters(id: string, subjects: ReadonlySet<string>, at: number): Promise<void> {
    for await (const page of this.#deadLetters.pages()) {
      const ids = page.filter((l) => erasureCovers(l.fields.e ?? '', subjects, at)).map((l) => l.id);
      await this.#deadLetters.erase(ids, id);
    }
  }

  /** Waits until no live worker holds checkpointed events (they are replayed through the same filter). */
  async #waitForCheckpoints(): Promise<void> {
    for (;;) {
      const live = await this.#o.workers.live();
      if (live.every((w) => w.checkpoint.events === 0)) return;
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** Runs `fn` holding the retention lease, so no pass archives the subject's rows meanwhile. */
  async #withRetentionLease<T>(fn: () => Promise<T>): Promise<T> {
    for (;;) {
      let lease: RunLease;
      try {
        lease = await RunLease.acquire(this.#o.pool, 'erasure', this.#holder, this.#staleMs);
      } catch (err) {
        if (!(err instanceof RetentionBusyError)) throw err;
        await new Promise((r) => setTimeout(r, 1_000));
        continue;
      }
      try {
        const result = await fn();
        await lease.finish('completed');
        return result;
      } catch (err) {
        await lease.finish('failed', errorSummary(err)).catch(() => {});
        throw err;
      }
    }
  }
}
