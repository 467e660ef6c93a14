import type pg from 'pg';
import type { Logger } from 'pino';
import type { BufferKeys } from '../buffer/keys.ts';
import type { RedisLike } from '../buffer/redis-client.ts';
import { extendErasureRequest, openErasureRequests } from '../store/dsar.repo.ts';
import { listOptOuts } from '../store/opt-outs.repo.ts';

/** A `"userId":"…"` or `"anonymousId":"…"` member in event JSON; the value as written (escapes undecoded). */
const SUBJECT_FIELD = /"(?:userId|anonymousId)":"((?:[^"\\]|\\.)*)"/g;

export type DropReason = 'user_opt_out' | 'erased';

/**
 * The subject ids of a buffered event (its JSON: `userId`, then `anonymousId`, those set)
 * and when it was received (ms, NaN if unreadable).
 */
function subjectOf(eventJson: string): { ids: string[]; received: number } | undefined {
  let event: { userId?: unknown; anonymousId?: unknown; receivedAt?: unknown };
  try {
    event = JSON.parse(eventJson) as typeof event;
  } catch {
    return undefined;
  }
  if (typeof event !== 'object' || event === null) return undefined;
  const ids = [event.userId, event.anonymousId].filter((v): v is string => typeof v === 'string');
  if (ids.length === 0) return undefined;
  const received = typeof event.receivedAt === 'string' ? Date.parse(event.receivedAt) : Number.NaN;
  return { ids, received };
}

/** An erasure requested at `at` covers what was received no later, or at no readable time. */
const erasedAt = (received: number, at: number) => !(received > at);

/**
 * Whether an erasure of a subject (`ids`: the id asked for and every id linked to it)
 * requested at `at` (epoch ms) covers a buffered event (its JSON, as a stream or dead-letter
 * entry holds it): its own `userId` or `anonymousId` (never one inside metadata) is one of
 * `ids`, and it was received no later than the request. The same rule the workers apply to
 * the buffer and checkpoints ({@link SubjectRegistry.dropReason}).
 */
export function erasureCovers(eventJson: string, ids: ReadonlySet<string>, at: number): boolean {
  const event = subjectOf(eventJson);
  return (event?.ids.some((id) => ids.has(id)) ?? false) && erasedAt(event?.received ?? 0, at);
}

/** Whether a buffered event (its JSON) is the subject's (`userId` or `anonymousId` in `ids`), whenever it was received. */
export function isSubjectsEvent(eventJson: string, ids: ReadonlySet<string>): boolean {
  return subjectOf(eventJson)?.ids.some((id) => ids.has(id)) ?? false;
}

/**
 * A change every process applies at once (pub/sub); full reloads catch up on anything missed.
 * `linked`: the ids linked to `userId` that the change covers too (ARCHITECTURE §12); absent
 * in messages of processes from before links, which covered `userId` alone.
 */
type Change =
  | { op: 'opt_out'; userId: string; at: number; linked?: { userId: string; at: number }[] }
  | { op: 'opt_in'; userId: string; linked?: string[] }
  | { op: 'erasure'; userId: string; requestId: string; at: number; linked?: string[] }
  | { op: 'erasure_done'; userId: string; requestId: string };

export interface SubjectRegistryOptions {
  pool: pg.Pool;
  /** For PUBLISH. */
  redis: RedisLike;
  /** A connection of its own, put in subscriber mode. */
  subscriber: RedisLike;
  /** The channel, and the drop counts of each erasure request. */
  keys: Pick<BufferKeys, 'subjects' | 'dsarDropped'>;
  logger: Logger;
  /** Full reload interval, in case a message was missed while Redis was away. */
  reloadEveryMs?: number;
}

/**
 * Which data subjects' events must not be stored, held in memory in every API and worker
 * process so the check costs no round trip per event:
 *  - opted out (since a time): the API answers their events `skipped`; a worker drops any
 *    received after the opt-out that a process not yet told let through;
 *  - erased (up to the request time): a worker drops their events received before the
 *    erasure request that still sit in the buffer or a checkpoint, however late they come
 *    (one entry per erased subject, for good).
 * Loaded from PostgreSQL at start and every few minutes, and changed at once through a
 * Redis pub/sub channel.
 */
export class SubjectRegistry {
  readonly #o: SubjectRegistryOptions;
  readonly #optOuts = new Map<string, number>();
  /** Subject id (a userId or anonymousId) → latest erasure request time (ms) and its request ids. */
  readonly #erasures = new Map<string, { at: number; requests: Set<string> }>();
  readonly #channel: string;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: SubjectRegistryOptions) {
    this.#o = opts;
    this.#channel = opts.keys.subjects;
  }

  async start(): Promise<void> {
    const { subscriber, logger } = this.#o;
    subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.#channel) return;
      try {
        this.#apply(JSON.parse(message) as Change);
      } catch (err) {
        logger.warn({ err }, 'bad subject change message');
      }
    });
    // Reload after every (re)subscribe: changes published while disconnected were missed.
    subscriber.on('ready', () => {
      void subscriber
        .subscribe(this.#channel)
        .then(() => this.reload())
        .catch(() => {});
    });
    if (subscriber.status === 'ready') await subscriber.subscribe(this.#channel).catch(() => {});
    await this.reload().catch((err: unknown) =>
      logger.warn({ err }, 'opt-outs and erasures not loaded yet; retrying'),
    );
    this.#timer = setInterval(() => void this.reload().catch(() => {}), this.#o.reloadEveryMs ?? 300_000);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Reads every opt-out and open erasure from PostgreSQL. */
  async reload(): Promise<void> {
    const [opt, era] = await Promise.all([listOptOuts(this.#o.pool), openErasureRequests(this.#o.pool)]);
    this.#optOuts.clear();
    for (const r of opt) this.#optOuts.set(r.userId, r.at);
    this.#erasures.clear();
    for (const r of era)
      this.#apply({ op: 'erasure', userId: r.userId, requestId: r.id, at: r.at, linked: r.subjects });
  }

  #apply(change: Change): void {
    switch (change.op) {
      case 'opt_out':
        this.#optOuts.set(change.userId, change.at);
        for (const l of change.linked ?? []) this.#optOuts.set(l.userId, l.at);
        break;
      case 'opt_in':
        this.#optOuts.delete(change.userId);
        for (const id of change.linked ?? []) this.#optOuts.delete(id);
        break;
      case 'erasure': {
        for (const id of new Set([change.userId, ...(change.linked ?? [])])) {
          const e = this.#erasures.get(id) ?? { at: 0, requests: new Set<string>() };
          e.at = Math.max(e.at, change.at);
          e.requests.add(change.requestId);
          this.#erasures.set(id, e);
        }
        break;
      }
      case 'erasure_done':
        // Kept: an orphaned checkpoint replayed later may still hold the subject's events
        // received before the request; they must never be stored.
        break;
    }
  }

  /** Applies a change here and tells every other process. */
  async publish(change: Change): Promise<void> {
    this.#apply(change);
    await this.#o.redis.publish(this.#channel, JSON.stringify(change));
  }

  /** Whether an event with these ids must be answered `skipped`: either id opted out. */
  isOptedOut(userId: string | undefined, anonymousId?: string): boolean {
    return (
      (userId !== undefined && this.#optOuts.has(userId)) ||
      (anonymousId !== undefined && this.#optOuts.has(anonymousId))
    );
  }

  /** Whether an erasure of this subject id was requested (it stays listed for good). */
  isErased(id: string): boolean {
    return this.#erasures.has(id);
  }

  /**
   * Extends the erasures of `erased` ids to ids linked to them by events those erasures
   * cover (see `linksToRecord` in worker/subject-filter.ts): recorded on each request
   * (reopening a completed one) and announced to every process.
   */
  async extendErasures(pairs: readonly { erased: string; linked: string }[]): Promise<void> {
    const done = new Set<string>();
    for (const { erased, linked } of pairs) {
      for (const requestId of this.#erasures.get(erased)?.requests ?? []) {
        if (done.has(`${requestId} ${linked}`)) continue;
        done.add(`${requestId} ${linked}`);
        const extended = await extendErasureRequest(this.#o.pool, requestId, linked);
        if (!extended) continue;
        this.#o.logger.info(
          { requestId, subjects: extended.subjects.length },
          'erasure extended to a linked id',
        );
        await this.publish({
          op: 'erasure',
          userId: extended.userId,
          requestId,
          at: extended.at,
          linked: extended.subjects,
        });
      }
    }
  }

  /** Nothing to check: the worker skips parsing events altogether. */
  get empty(): boolean {
    return this.#optOuts.size === 0 && this.#erasures.size === 0;
  }

  /**
   * Why an event (its JSON as buffered) must not be stored, if it must not; with the
   * subject, so erasure counts can be attributed.
   */
  dropReason(eventJson: string): { reason: DropReason; userId: string } | undefined {
    if (this.empty || !this.#mentionsListedSubject(eventJson)) return undefined;
    const event = subjectOf(eventJson);
    if (!event) return undefined;
    const { ids, received } = event;
    for (const id of ids) {
      const erasure = this.#erasures.get(id);
      if (erasure && erasedAt(received, erasure.at)) return { reason: 'erased', userId: id };
    }
    for (const id of ids) {
      const optedOutAt = this.#optOuts.get(id);
      if (optedOutAt !== undefined && !(received < optedOutAt)) return { reason: 'user_opt_out', userId: id };
    }
    return undefined;
  }

  /**
   * A cheap screen before a full parse, so a worker parses only the events of listed
   * subjects (erasure markers stay for good, so the lists are rarely empty): does any
   * `"userId":"…"` or `"anonymousId":"…"` in the text name a listed subject? Every
   * occurrence is tried, so such a key inside metadata cannot hide the event's own; an
   * escaped value is decoded.
   */
  #mentionsListedSubject(json: string): boolean {
    for (const match of json.matchAll(SUBJECT_FIELD)) {
      let id = match[1] as string;
      if (id.includes('\\')) {
        try {
          id = JSON.parse(`"${id}"`) as string;
        } catch {
          return true;
        }
      }
      if (this.#erasures.has(id) || this.#optOuts.has(id)) return true;
    }
    return false;
  }

  /**
   * Counts events of subjects being erased that a worker dropped (`userId`: the erased id
   * the event carried), per erasure request and
   * place (`buffer` or `checkpoint`), in Redis, where the erasure job reads them.
   */
  async recordDrops(
    drops: { reason: DropReason; userId: string }[],
    where: 'buffer' | 'checkpoint',
  ): Promise<void> {
    const counts = new Map<string, number>();
    for (const d of drops) {
      if (d.reason !== 'erased') continue;
      for (const id of this.#erasures.get(d.userId)?.requests ?? [])
        counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    if (counts.size === 0) return;
    // One MULTI per request: each touches one key, as a Redis Cluster requires.
    await Promise.all(
      [...counts].map(([id, n]) => {
        const key = this.#o.keys.dsarDropped(id);
        return this.#o.redis
          .multi()
          .hincrby(key, where, n)
          .expire(key, 30 * 86_400)
          .exec();
      }),
    );
  }
}
