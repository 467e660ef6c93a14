import type { Logger } from 'pino';
import { KeyLoad } from './key-load.ts';
import { type BufferKeys, CONSUMER_GROUP } from './keys.ts';
import { primaries, type RedisLike } from './redis-client.ts';
import { findNamed } from './redis-reply.ts';

export interface PartitionStats {
  partition: number;
  /** Entries in the stream: not yet persisted (acknowledged entries are deleted). */
  length: number;
  /** Delivered to a worker, not yet acknowledged. */
  pending: number;
  /** Entries not yet delivered to any worker (null when Redis cannot tell). */
  lag: number | null;
}

export interface BufferSnapshot {
  length: number;
  pending: number;
  lag: number;
  maxEvents: number;
  /** length / maxEvents. */
  utilisation: number;
  /** used_memory / maxmemory, null without maxmemory. */
  memoryRatio: number | null;
  deadLetters: number;
  backpressure: boolean;
  partitions: PartitionStats[];
}

export interface BufferMonitorOptions {
  redis: RedisLike;
  keys: BufferKeys;
  maxEvents: number;
  maxMemoryRatio: number;
  logger: Logger;
  /** How often the backpressure flag is refreshed. */
  intervalMs?: number;
  /** BUFFER_MAX_SHARE_PER_KEY: with it, each key's events in the buffer are tracked ({@link BufferMonitor.keyLoad}). */
  maxSharePerKey?: number | undefined;
}

/**
 * Knows how full the buffer is. Ingest reads {@link BufferMonitor.overloaded}, refreshed in
 * the background, so the check costs no round trip per request.
 */
export class BufferMonitor {
  readonly #opts: BufferMonitorOptions;
  #timer: NodeJS.Timeout | undefined;
  #overloaded = false;
  /** Each key's events in the buffer, with BUFFER_MAX_SHARE_PER_KEY; refreshed with the flag. */
  readonly keyLoad: KeyLoad | undefined;

  constructor(opts: BufferMonitorOptions) {
    this.#opts = opts;
    this.keyLoad =
      opts.maxSharePerKey === undefined
        ? undefined
        : new KeyLoad({
            redis: opts.redis,
            keys: opts.keys,
            logger: opts.logger,
            maxPerKey: Math.floor(opts.maxEvents * opts.maxSharePerKey),
          });
  }

  /** True while unpersisted entries or Redis memory are over their high-water marks. */
  get overloaded(): boolean {
    return this.#overloaded;
  }

  start(): void {
    if (this.#timer) return;
    const tick = () => {
      this.refresh().catch((err: unknown) => {
        this.#opts.logger.debug({ err }, 'buffer level poll failed');
      });
    };
    tick();
    this.#timer = setInterval(tick, this.#opts.intervalMs ?? 500);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Reads stream lengths and memory once and updates the backpressure flag. */
  async refresh(): Promise<boolean> {
    const { redis, keys } = this.#opts;
    const [lengths, memoryRatio] = await Promise.all([
      Promise.all(keys.streams.map((key) => settled(redis.xlen(key)))),
      this.#memoryRatio(),
    ]);
    const length = lengths.reduce<number>((sum, n) => sum + Number(n ?? 0), 0);
    this.#overloaded = this.#isOver(length, memoryRatio);
    // Only when every stream answered: a missing length would reset the counts.
    if (lengths.every((n) => n !== undefined)) await this.keyLoad?.refresh(length);
    return this.#overloaded;
  }

  /**
   * used_memory / maxmemory of the fullest server (every primary of a cluster: one that
   * runs out of memory refuses the writes of its partitions), or null without maxmemory.
   */
  async #memoryRatio(): Promise<number | null> {
    const infos = await Promise.all(primaries(this.#opts.redis).map((node) => settled(node.info('memory'))));
    let ratio: number | null = null;
    for (const info of infos) {
      const r = parseMemoryRatio(String(info ?? ''));
      if (r !== null && (ratio === null || r > ratio)) ratio = r;
    }
    return ratio;
  }

  #isOver(length: number, memoryRatio: number | null): boolean {
    return length > this.#opts.maxEvents || (memoryRatio !== null && memoryRatio > this.#opts.maxMemoryRatio);
  }

  /** Full per-partition picture, for health endpoints. */
  async snapshot(): Promise<BufferSnapshot> {
    const { redis, keys, maxEvents } = this.#opts;
    // One command per key (never a multi-key pipeline, which a cluster refuses across
    // slots); the shared client pipelines them on its own. A failed command counts as
    // empty, as in a pipeline's reply.
    const [perStream, deadLetters, memoryRatio] = await Promise.all([
      Promise.all(
        keys.streams.map((key) =>
          Promise.all([settled(redis.xlen(key)), settled(redis.xinfo('GROUPS', key))]),
        ),
      ),
      settled(redis.xlen(keys.deadLetter)),
      this.#memoryRatio(),
    ]);
    const partitions: PartitionStats[] = perStream.map(([rawLength, groups], p) => {
      const length = Number(rawLength ?? 0);
      const group = findNamed(groups, CONSUMER_GROUP);
      return {
        partition: p,
        length,
        pending: group ? Number(group.pending ?? 0) : 0,
        lag: group ? (group.lag === null || group.lag === undefined ? null : Number(group.lag)) : length,
      };
    });
    const length = partitions.reduce((s, p) => s + p.length, 0);
    const backpressure = this.#isOver(length, memoryRatio);
    this.#overloaded = backpressure;
    return {
      length,
      pending: partitions.reduce((s, p) => s + p.pending, 0),
      lag: partitions.reduce((s, p) => s + (p.lag ?? 0), 0),
      maxEvents,
      utilisation: length / maxEvents,
      memoryRatio,
      deadLetters: Number(deadLetters ?? 0),
      backpressure,
      partitions,
    };
  }
}

/** The reply, or undefined when the command failed. */
function settled<T>(reply: Promise<T>): Promise<T | undefined> {
  return reply.catch(() => undefined);
}

function parseMemoryRatio(info: string): number | null {
  const used = /used_memory:(\d+)/.exec(info)?.[1];
  const max = /maxmemory:(\d+)/.exec(info)?.[1];
  if (!used || !max || Number(max) === 0) return null;
  return Number(used) / Number(max);
}
