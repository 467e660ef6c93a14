import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { type BufferKeys, CONSUMER_GROUP } from './keys.ts';

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
  redis: Redis;
  keys: BufferKeys;
  maxEvents: number;
  maxMemoryRatio: number;
  logger: Logger;
  /** How often the backpressure flag is refreshed. */
  intervalMs?: number;
}

/**
 * Knows how full the buffer is. Ingest reads {@link BufferMonitor.overloaded}, refreshed in
 * the background, so the check costs no round trip per request.
 */
export class BufferMonitor {
  readonly #opts: BufferMonitorOptions;
  #timer: NodeJS.Timeout | undefined;
  #overloaded = false;

  constructor(opts: BufferMonitorOptions) {
    this.#opts = opts;
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
    const pipeline = redis.pipeline();
    for (const key of keys.streams) pipeline.xlen(key);
    pipeline.info('memory');
    const replies = (await pipeline.exec()) ?? [];
    let length = 0;
    for (let p = 0; p < keys.partitions; p++) length += Number(replies[p]?.[1] ?? 0);
    const memoryRatio = parseMemoryRatio(String(replies[keys.partitions]?.[1] ?? ''));
    this.#overloaded = this.#isOver(length, memoryRatio);
    return this.#overloaded;
  }

  #isOver(length: number, memoryRatio: number | null): boolean {
    return length > this.#opts.maxEvents || (memoryRatio !== null && memoryRatio > this.#opts.maxMemoryRatio);
  }

  /** Full per-partition picture, for health endpoints. */
  async snapshot(): Promise<BufferSnapshot> {
    const { redis, keys, maxEvents } = this.#opts;
    const pipeline = redis.pipeline();
    for (const key of keys.streams) {
      pipeline.xlen(key);
      pipeline.xinfo('GROUPS', key);
    }
    pipeline.xlen(keys.deadLetter);
    pipeline.info('memory');
    const replies = (await pipeline.exec()) ?? [];
    const partitions: PartitionStats[] = [];
    for (let p = 0; p < keys.partitions; p++) {
      const length = Number(replies[2 * p]?.[1] ?? 0);
      const group = findGroup(replies[2 * p + 1]?.[1]);
      partitions.push({
        partition: p,
        length,
        pending: group ? Number(group.pending ?? 0) : 0,
        lag: group ? (group.lag === null || group.lag === undefined ? null : Number(group.lag)) : length,
      });
    }
    const deadLetters = Number(replies[2 * keys.partitions]?.[1] ?? 0);
    const memoryRatio = parseMemoryRatio(String(replies[2 * keys.partitions + 1]?.[1] ?? ''));
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
      deadLetters,
      backpressure,
      partitions,
    };
  }
}

/** XINFO GROUPS reply → the `writers` group's fields, or undefined. */
function findGroup(reply: unknown): Record<string, unknown> | undefined {
  if (!Array.isArray(reply)) return undefined;
  for (const raw of reply) {
    if (!Array.isArray(raw)) continue;
    const fields: Record<string, unknown> = {};
    for (let i = 0; i + 1 < raw.length; i += 2) fields[String(raw[i])] = raw[i + 1];
    if (fields.name === CONSUMER_GROUP) return fields;
  }
  return undefined;
}

function parseMemoryRatio(info: string): number | null {
  const used = /used_memory:(\d+)/.exec(info)?.[1];
  const max = /maxmemory:(\d+)/.exec(info)?.[1];
  if (!used || !max || Number(max) === 0) return null;
  return Number(used) / Number(max);
}
