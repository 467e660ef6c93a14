import type { Logger } from 'pino';
import { subtractAcknowledged } from './key-load.ts';
import { type BufferKeys, CONSUMER_GROUP } from './keys.ts';
import { isCluster, type RedisLike } from './redis-client.ts';
import { findNamed } from './redis-reply.ts';
import { type BufferRedis, registerScripts } from './scripts.ts';
import { groupByPartition, nextId, type RawEntry, type StreamEntry, toEntry } from './stream-entry.ts';

export type { StreamEntry } from './stream-entry.ts';

export interface StreamConsumerOptions {
  /** A connection of its own: XREADGROUP blocks it. */
  redis: RedisLike;
  keys: BufferKeys;
  /** Unique per process: host + pid. */
  consumerName: string;
  logger: Logger;
  /** Lower each key's count of buffered events on ack (BUFFER_MAX_SHARE_PER_KEY is set: buffer/key-load.ts). */
  trackKeyLoad?: boolean;
}

/**
 * On a Redis Cluster, how long one blocking read waits on one partition before all are
 * read again: the longest an entry waits to be read by an otherwise idle worker.
 */
const CLUSTER_BLOCK_SLICE_MS = 100;

/** How long creating the groups waits for the connection before failing (the caller retries). */
const READY_WAIT_MS = 2_000;

/** The worker's side of the streams: read, reclaim, acknowledge, trim. */
export class StreamConsumer {
  readonly #redis: BufferRedis;
  readonly #keys: BufferKeys;
  readonly #name: string;
  readonly #logger: Logger;
  readonly #trackKeyLoad: boolean;
  #claimCursor: string[];
  /** On a cluster, the partition the next blocking read waits on (round robin). */
  #blockOn = 0;

  constructor(opts: StreamConsumerOptions) {
    this.#redis = registerScripts(opts.redis);
    this.#keys = opts.keys;
    this.#name = opts.consumerName;
    this.#logger = opts.logger;
    this.#trackKeyLoad = opts.trackKeyLoad ?? false;
    this.#claimCursor = opts.keys.streams.map(() => '0-0');
  }

  get name(): string {
    return this.#name;
  }

  /** Creates the group on every partition (from the stream's start), once per stream. */
  async ensureGroups(): Promise<void> {
    await this.#ready(READY_WAIT_MS);
    await Promise.all(
      this.#keys.streams.map(async (key) => {
        try {
          await this.#redis.xgroup('CREATE', key, CONSUMER_GROUP, '0', 'MKSTREAM');
        } catch (err) {
          if (!(err instanceof Error && err.message.startsWith('BUSYGROUP'))) throw err;
        }
      }),
    );
  }

  /**
   * Reads about `count` new entries across all partitions (COUNT is per stream, so up to
   * `count + partitions`), blocking at most `blockMs` when none is there; with `blockMs`
   * 0 it does not block (a blocked read holds the connection, and acks wait behind it).
   * While Redis is away it waits up to `blockMs` for the reconnect and returns nothing, so
   * the caller's loop resumes as soon as Redis is back. Recreates the groups when Redis
   * lost them (a restart without persistence, FLUSHALL).
   */
  async read(count: number, blockMs: number): Promise<StreamEntry[]> {
    if (!(await this.#ready(blockMs))) return [];
    const perStream = Math.max(1, Math.ceil(count / this.#keys.partitions));
    try {
      return isCluster(this.#redis)
        ? await this.#readEach(perStream, blockMs)
        : await this.#readGroup(this.#keys.streams, perStream, blockMs);
    } catch (err) {
      if (!isGroupLost(err)) throw err;
      await this.#recreateGroups(err);
      return [];
    }
  }

  /**
   * {@link read} on a Redis Cluster, where one XREADGROUP cannot name streams of different
   * hash slots (CROSSSLOT): one non-blocking read per partition, in parallel, and while all
   * are empty, a short blocking read on one partition at a time (a blocked read holds its
   * node's connection, so blocking on every partition at once would queue them one behind
   * the other). An entry arriving in another partition then waits at most one slice.
   * Partitions that answer are returned even when others fail (a primary failing over).
   */
  async #readEach(perStream: number, blockMs: number): Promise<StreamEntry[]> {
    const streams = this.#keys.streams;
    const deadline = Date.now() + blockMs;
    for (;;) {
      const results = await Promise.allSettled(streams.map((key) => this.#readGroup([key], perStream, 0)));
      const entries: StreamEntry[] = [];
      let failure: unknown;
      for (const r of results) {
        if (r.status === 'fulfilled') entries.push(...r.value);
        else failure ??= r.reason;
      }
      if (failure !== undefined) {
        if (isGroupLost(failure)) await this.#recreateGroups(failure);
        else if (entries.length === 0) throw failure;
        else this.#logger.debug({ err: failure }, 'some partitions could not be read');
      }
      const left = deadline - Date.now();
      if (entries.length > 0 || failure !== undefined || left <= 0) return entries;
      const key = streams[this.#blockOn++ % streams.length] as string;
      const got = await this.#readGroup([key], perStream, Math.min(left, CLUSTER_BLOCK_SLICE_MS));
      if (got.length > 0 || Date.now() >= deadline) return got;
    }
  }

  /** One XREADGROUP over `streams` (all of one hash slot on a cluster). */
  async #readGroup(streams: readonly string[], perStream: number, blockMs: number): Promise<StreamEntry[]> {
    // BLOCK 0 would block forever: leave the option out instead.
    const args: (string | number)[] = ['GROUP', CONSUMER_GROUP, this.#name, 'COUNT', perStream];
    if (blockMs > 0) args.push('BLOCK', blockMs);
    args.push('STREAMS', ...streams, ...streams.map(() => '>'));
    // Through the typed command, whose reply ioredis shapes as [key, entries][] (call() would not under RESP3).
    const xreadgroup = this.#redis.xreadgroup.bind(this.#redis) as (
      ...a: (string | number)[]
    ) => Promise<unknown>;
    const reply = await xreadgroup(...args);
    const entries: StreamEntry[] = [];
    for (const [key, raw] of (reply ?? []) as [string, RawEntry[]][]) {
      const partition = this.#keys.streams.indexOf(key);
      for (const item of raw) {
        const entry = toEntry(partition, item, 1);
        if (entry) entries.push(entry);
      }
    }
    return entries;
  }

  async #recreateGroups(err: unknown): Promise<void> {
    this.#logger.warn({ err }, 'consumer group missing (Redis lost its data?); recreating it');
    await this.ensureGroups();
  }

  /**
   * Takes over entries that another consumer has held for longer than `minIdleMs`
   * (XAUTOCLAIM), with their delivery counts. Walks each partition's pending list
   * across calls, `count` entries at a time. Nothing while Redis is away: a later call
   * takes them.
   */
  async claimIdle(minIdleMs: number, count: number): Promise<StreamEntry[]> {
    const entries: StreamEntry[] = [];
    if (!(await this.#ready(0))) return entries;
    for (let p = 0; p < this.#keys.partitions; p++) {
      const key = this.#keys.stream(p);
      let reply: unknown[];
      try {
        reply = (await this.#redis.xautoclaim(
          key,
          CONSUMER_GROUP,
          this.#name,
          minIdleMs,
          this.#claimCursor[p] ?? '0-0',
          'COUNT',
          count,
        )) as unknown[];
      } catch (err) {
        if (err instanceof Error && err.message.startsWith('NOGROUP')) continue;
        throw err;
      }
      this.#claimCursor[p] = String(reply[0] ?? '0-0');
      const claimed = ((reply[1] ?? []) as RawEntry[]).filter((e) => e !== null);
      if (claimed.length === 0) continue;
      const deliveries = await this.#deliveryCounts(key, claimed);
      for (const item of claimed) {
        const entry = toEntry(p, item, deliveries.get(item[0]) ?? 1);
        if (entry) entries.push(entry);
      }
    }
    return entries;
  }

  /**
   * Whether the connection is up, waiting at most `maxWaitMs` for a reconnect. The
   * connection fails fast (no offline queue, no resend), so a command sent while it is
   * down fails at once; waiting here keeps an outage out of the caller's error path.
   */
  async #ready(maxWaitMs: number): Promise<boolean> {
    const redis = this.#redis;
    if (redis.status === 'ready') return true;
    if (maxWaitMs <= 0 || redis.status === 'end') return false;
    return new Promise<boolean>((resolve) => {
      const done = (ready: boolean) => {
        clearTimeout(timer);
        redis.off('ready', onReady);
        resolve(ready);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), maxWaitMs);
      redis.on('ready', onReady);
    });
  }

  async #deliveryCounts(key: string, claimed: RawEntry[]): Promise<Map<string, number>> {
    const first = claimed[0]?.[0] ?? '-';
    const last = claimed[claimed.length - 1]?.[0] ?? '+';
    const rows = (await this.#redis.xpending(
      key,
      CONSUMER_GROUP,
      first,
      last,
      claimed.length,
      this.#name,
    )) as [string, string, number, number][];
    return new Map(rows.map(([id, , , times]) => [id, Number(times)]));
  }

  /**
   * Resets the idle time of entries this consumer still holds (XCLAIM … JUSTID, which does
   * not count a delivery), so a worker that is waiting out a database outage keeps them
   * instead of having them reclaimed, and counted toward MAX_DELIVERIES, by another.
   */
  async touch(entries: readonly Pick<StreamEntry, 'partition' | 'id'>[]): Promise<void> {
    // TypeScript cannot pick an overload of a method of `Redis | Cluster`; both have this one.
    const xclaim = this.#redis.xclaim.bind(this.#redis) as (...a: (string | number)[]) => Promise<unknown>;
    const calls: Promise<unknown>[] = [];
    for (const [p, ids] of groupByPartition(entries)) {
      calls.push(xclaim(this.#keys.stream(p), CONSUMER_GROUP, this.#name, 0, ...ids, 'JUSTID'));
    }
    await Promise.all(calls);
  }

  /** Acknowledges and deletes entries (after their rows are committed). */
  async ack(
    entries: readonly (Pick<StreamEntry, 'partition' | 'id'> & { event?: string | undefined })[],
  ): Promise<number> {
    let acked = 0;
    const calls: Promise<number>[] = [];
    for (const [p, ids] of groupByPartition(entries)) {
      // Lua's unpack() has a stack limit of a few thousand values.
      for (let i = 0; i < ids.length; i += 1000) {
        calls.push(
          this.#redis.tributaryAckDelete(this.#keys.stream(p), CONSUMER_GROUP, ...ids.slice(i, i + 1000)),
        );
      }
    }
    for (const n of await Promise.all(calls)) acked += Number(n);
    if (this.#trackKeyLoad) await subtractAcknowledged(this.#redis, this.#keys, entries, this.#logger);
    return acked;
  }

  /** Entries in all partition streams: buffered and not yet persisted (acknowledged ones are deleted). */
  async backlog(): Promise<number> {
    const lengths = await Promise.all(this.#keys.streams.map((key) => this.#redis.xlen(key)));
    return lengths.reduce((a, b) => a + b, 0);
  }

  /**
   * Removes entries that are acknowledged but still in a stream (a crash between XACK and
   * XDEL). Trims with MINID to the oldest entry that is pending or not yet delivered,
   * so no unacknowledged entry is ever dropped.
   */
  async trimAcknowledged(): Promise<void> {
    for (const key of this.#keys.streams) {
      const groups = await this.#redis.xinfo('GROUPS', key).catch(() => []);
      const group = findNamed(groups, CONSUMER_GROUP);
      if (!group) continue;
      const summary = (await this.#redis.xpending(key, CONSUMER_GROUP)) as [
        number,
        string | null,
        ...unknown[],
      ];
      const lastDelivered = String(group['last-delivered-id'] ?? '0-0');
      const oldestPending = Number(summary[0]) > 0 ? summary[1] : null;
      const minId = oldestPending ?? nextId(lastDelivered);
      await this.#redis.xtrim(key, 'MINID', minId);
    }
  }
}

/**
 * NOGROUP: the stream or the group is gone. UNBLOCKED: the stream was deleted while a
 * read waited on it (FLUSHALL).
 */
function isGroupLost(err: unknown): boolean {
  return err instanceof Error && /^(NOGROUP|UNBLOCKED) /.test(err.message);
}
