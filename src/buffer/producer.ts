import type { Redis } from 'ioredis';
import type { NormalisedEvent } from '../events/event.schema.ts';
import { BufferUnavailableError, toBufferError } from './errors.ts';
import { type BufferKeys, ENTRY_FORMAT_VERSION } from './keys.ts';
import { partitionFor } from './partition.ts';
import { registerScripts } from './scripts.ts';

/** Number of past buckets checked besides the current one; the window is split into this many. */
const DEDUPE_BUCKETS = 8;

export interface BufferedEvent {
  event: NormalisedEvent;
  /** `JSON.stringify(event)`, computed once at validation. */
  json: string;
  /** W3C traceparent of the ingest span, or ''. */
  traceparent: string;
}

export type EnqueueOutcome = 'accepted' | 'duplicate';

export interface EventProducerOptions {
  redis: Redis;
  keys: BufferKeys;
  /** 0 turns id memory off. */
  dedupeWindowS: number;
  /** With N > 0, wait until N replicas acknowledged the write. */
  waitReplicas?: number;
  waitTimeoutMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/** Writes validated events into their partition streams: one atomic Lua call per partition. */
export class EventProducer {
  readonly #redis;
  readonly #keys: BufferKeys;
  readonly #bucketS: number;
  readonly #ttlS: number;
  readonly #waitReplicas: number;
  readonly #waitTimeoutMs: number;
  readonly #now: () => number;

  constructor(opts: EventProducerOptions) {
    this.#redis = registerScripts(opts.redis);
    this.#keys = opts.keys;
    this.#bucketS = opts.dedupeWindowS > 0 ? Math.max(1, Math.ceil(opts.dedupeWindowS / DEDUPE_BUCKETS)) : 0;
    // A bucket must outlive the moment it leaves the checked range: DEDUPE_BUCKETS + 1 widths.
    this.#ttlS = this.#bucketS * (DEDUPE_BUCKETS + 1);
    this.#waitReplicas = opts.waitReplicas ?? 0;
    this.#waitTimeoutMs = opts.waitTimeoutMs ?? 1000;
    this.#now = opts.now ?? Date.now;
  }

  /** Partition of an event: by subject when it has one, else by service. */
  partitionOf(event: NormalisedEvent): number {
    return partitionFor(event.userId ?? event.service, this.#keys.partitions);
  }

  /**
   * Buffers events and resolves, in input order, whether each was written or was a repeat
   * of an id seen within the dedupe window. Resolves only after every XADD returned.
   * @throws BufferUnavailableError or BufferFullError; events of other partitions may have been written.
   */
  async enqueue(items: readonly BufferedEvent[]): Promise<EnqueueOutcome[]> {
    const byPartition = new Map<number, number[]>();
    items.forEach((item, index) => {
      const p = this.partitionOf(item.event);
      const list = byPartition.get(p);
      if (list) list.push(index);
      else byPartition.set(p, [index]);
    });

    const outcomes = new Array<EnqueueOutcome>(items.length);
    const bucket = this.#bucketS > 0 ? Math.floor(this.#now() / 1000 / this.#bucketS) : 0;
    try {
      await Promise.all(
        [...byPartition].map(async ([p, indexes]) => {
          const keys = [this.#keys.stream(p)];
          if (this.#bucketS > 0) {
            for (let b = bucket; b >= bucket - DEDUPE_BUCKETS; b--) keys.push(this.#keys.dedupe(p, b));
          }
          const args: (string | Buffer | number)[] = [this.#ttlS, ENTRY_FORMAT_VERSION];
          for (const i of indexes) {
            const item = items[i] as BufferedEvent;
            args.push(uuidBytes(item.event.id), item.json, item.traceparent);
          }
          const result = await this.#redis.tributaryEnqueue(keys.length, ...keys, ...args);
          indexes.forEach((itemIndex, k) => {
            outcomes[itemIndex] = result[k] === 0 ? 'duplicate' : 'accepted';
          });
        }),
      );
      if (this.#waitReplicas > 0) {
        const acked = await this.#redis.wait(this.#waitReplicas, this.#waitTimeoutMs);
        if (acked < this.#waitReplicas) {
          throw new BufferUnavailableError(
            `only ${acked} of ${this.#waitReplicas} replicas confirmed the write`,
          );
        }
      }
    } catch (err) {
      if (err instanceof BufferUnavailableError) throw err;
      throw toBufferError(err);
    }
    return outcomes;
  }
}

/** 16-byte form of a UUID: the dedupe sets hold these instead of 36-character strings. */
function uuidBytes(id: string): Buffer {
  return Buffer.from(id.replaceAll('-', ''), 'hex');
}
