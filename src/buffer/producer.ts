import { hash } from 'node:crypto';
import type { NormalisedEvent } from '../events/event.schema.ts';
import { BufferUnavailableError, toBufferError } from './errors.ts';
import { type BufferKeys, ENTRY_FORMAT_VERSION } from './keys.ts';
import { partitionFor, routingKeyOf } from './partition.ts';
import { isCluster, type RedisLike } from './redis-client.ts';
import { type BufferPipeline, registerScripts } from './scripts.ts';

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
  redis: RedisLike;
  keys: BufferKeys;
  /** 0 turns id memory off. */
  dedupeWindowS: number;
  /** With N > 0, wait until N replicas acknowledged the write. */
  waitReplicas?: number;
  waitTimeoutMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/** Writes validated events into their partition streams: one atomic Lua call per partition and flush. */
export class EventProducer {
  readonly #redis;
  readonly #keys: BufferKeys;
  readonly #bucketS: number;
  readonly #ttlS: number;
  readonly #waitReplicas: number;
  readonly #waitTimeoutMs: number;
  /** On a cluster, WAIT goes with each script call, to the primary that ran it. */
  readonly #waitPerCall: boolean;
  readonly #now: () => number;
  /** Events waiting for the next flush, by partition. */
  readonly #pending = new Map<number, PendingSlot[]>();
  #flushScheduled = false;

  constructor(opts: EventProducerOptions) {
    this.#redis = registerScripts(opts.redis);
    this.#keys = opts.keys;
    this.#bucketS = opts.dedupeWindowS > 0 ? Math.max(1, Math.ceil(opts.dedupeWindowS / DEDUPE_BUCKETS)) : 0;
    // A bucket must outlive the moment it leaves the checked range: DEDUPE_BUCKETS + 1 widths.
    this.#ttlS = this.#bucketS * (DEDUPE_BUCKETS + 1);
    this.#waitReplicas = opts.waitReplicas ?? 0;
    this.#waitTimeoutMs = opts.waitTimeoutMs ?? 1000;
    this.#waitPerCall = this.#waitReplicas > 0 && isCluster(opts.redis);
    this.#now = opts.now ?? Date.now;
  }

  /** Partition of an event: by subject when it has one, else by service. */
  partitionOf(event: NormalisedEvent): number {
    return partitionFor(routingKeyOf(event), this.#keys.partitions);
  }

  /**
   * Buffers events and resolves, in input order, whether each was written or was a repeat
   * of an id seen within the dedupe window. Resolves only after every XADD returned.
   *
   * Calls made in the same turn of the event loop are written together: one script call
   * per partition for all of them, instead of one per request and partition.
   * @throws BufferUnavailableError or BufferFullError; events of other partitions may have been written.
   */
  enqueue(items: readonly BufferedEvent[]): Promise<EnqueueOutcome[]> {
    return new Promise((resolve, reject) => {
      const request: PendingRequest = {
        outcomes: new Array(items.length),
        error: undefined,
        resolve,
        reject,
      };
      items.forEach((item, index) => {
        const p = this.partitionOf(item.event);
        const list = this.#pending.get(p);
        const slot = { item, request, index };
        if (list) list.push(slot);
        else this.#pending.set(p, [slot]);
      });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => void this.#flush());
      }
    });
  }

  /**
   * Which of `events` {@link enqueue} would answer `duplicate` now, in input order, writing
   * nothing: an id already in its partition's dedupe window, or one repeated earlier in
   * `events` within the same partition (the script remembers each id as it writes it). All
   * false with dedupe off. For the dry run (`POST /v1/events/validate`).
   * @throws BufferUnavailableError or BufferFullError
   */
  async repeats(events: readonly NormalisedEvent[]): Promise<boolean[]> {
    const out = new Array<boolean>(events.length).fill(false);
    if (this.#bucketS === 0 || events.length === 0) return out;
    const bucket = Math.floor(this.#now() / 1000 / this.#bucketS);
    const byPartition = new Map<number, { members: string[]; at: number[] }>();
    events.forEach((event, i) => {
      const p = this.partitionOf(event);
      const group = byPartition.get(p) ?? { members: [], at: [] };
      if (group.at.length === 0) byPartition.set(p, group);
      group.members.push(dedupeMember(event));
      group.at.push(i);
    });
    try {
      await Promise.all(
        [...byPartition].map(async ([p, { members, at }]) => {
          const buckets = Array.from({ length: DEDUPE_BUCKETS + 1 }, (_, k) =>
            this.#keys.dedupe(p, bucket - k),
          );
          const replies = await Promise.all(buckets.map((key) => this.#redis.smismember(key, ...members)));
          const earlier = new Set<string>();
          members.forEach((member, k) => {
            if (earlier.has(member) || replies.some((r) => r[k] === 1)) out[at[k] as number] = true;
            earlier.add(member);
          });
        }),
      );
    } catch (err) {
      throw toBufferError(err);
    }
    return out;
  }

  async #flush(): Promise<void> {
    const pending = [...this.#pending];
    this.#pending.clear();
    this.#flushScheduled = false;
    const requests = new Set<PendingRequest>();
    const bucket = this.#bucketS > 0 ? Math.floor(this.#now() / 1000 / this.#bucketS) : 0;
    const calls: Promise<void>[] = [];
    for (const [p, slots] of pending) {
      for (const slot of slots) requests.add(slot.request);
      for (let from = 0; from < slots.length; from += MAX_EVENTS_PER_CALL) {
        calls.push(this.#write(p, bucket, slots.slice(from, from + MAX_EVENTS_PER_CALL)));
      }
    }
    await Promise.all(calls);
    if (this.#waitReplicas > 0 && !this.#waitPerCall) await this.#awaitReplicas(requests);
    for (const r of requests) {
      if (r.error) r.reject(r.error);
      else r.resolve(r.outcomes);
    }
  }

  /** One atomic script call: the slots' events into partition `p`; a failure marks their requests. */
  async #write(p: number, bucket: number, slots: PendingSlot[]): Promise<void> {
    const keys = [this.#keys.stream(p)];
    if (this.#bucketS > 0) {
      for (let b = bucket; b >= bucket - DEDUPE_BUCKETS; b--) keys.push(this.#keys.dedupe(p, b));
    }
    const args: (string | number)[] = [this.#ttlS, ENTRY_FORMAT_VERSION];
    for (const { item } of slots) args.push(dedupeMember(item.event), item.json, item.traceparent);
    try {
      const result = this.#waitPerCall
        ? await this.#enqueueAndWait(keys, args)
        : await this.#redis.tributaryEnqueue(keys.length, ...keys, ...args);
      slots.forEach(({ request, index }, k) => {
        request.outcomes[index] = result[k] === '0' ? 'duplicate' : 'accepted';
      });
    } catch (err) {
      const error = toBufferError(err);
      for (const { request } of slots) request.error ??= error;
    }
  }

  /**
   * On a Redis Cluster: the script call and WAIT in one pipeline, which ioredis sends to
   * the primary of the partition's slot, so WAIT runs on the connection that made the
   * write (WAIT counts only its own connection's writes). A pipeline is not redirected
   * when its WAIT succeeded: after a MOVED the call fails (503, the client retries) and the
   * slot map is refreshed for the next one.
   */
  async #enqueueAndWait(keys: string[], args: (string | number)[]): Promise<string> {
    const pipeline = this.#redis.pipeline() as BufferPipeline;
    pipeline.tributaryEnqueue(keys.length, ...keys, ...args);
    pipeline.wait(this.#waitReplicas, this.#waitTimeoutMs);
    const [write, wait] = (await pipeline.exec()) ?? [];
    const failed = write?.[0] ?? wait?.[0];
    if (failed) {
      if (/^(MOVED|ASK) /.test(failed.message) && isCluster(this.#redis)) this.#redis.refreshSlotsCache();
      throw failed;
    }
    if (!write || !wait) throw new BufferUnavailableError('no reply to the write or to WAIT');
    const acked = Number(wait[1]);
    if (acked < this.#waitReplicas) {
      throw new BufferUnavailableError(`only ${acked} of ${this.#waitReplicas} replicas confirmed the write`);
    }
    return write[1] as string;
  }

  async #awaitReplicas(requests: Set<PendingRequest>): Promise<void> {
    let error: Error | undefined;
    try {
      const acked = await this.#redis.wait(this.#waitReplicas, this.#waitTimeoutMs);
      if (acked < this.#waitReplicas) {
        error = new BufferUnavailableError(
          `only ${acked} of ${this.#waitReplicas} replicas confirmed the write`,
        );
      }
    } catch (err) {
      error = toBufferError(err);
    }
    if (error) for (const r of requests) r.error ??= error;
  }
}

/** Events of one partition written in one script call; bounds how long Redis runs one script. */
const MAX_EVENTS_PER_CALL = 500;

interface PendingRequest {
  outcomes: EnqueueOutcome[];
  error: Error | undefined;
  resolve(outcomes: EnqueueOutcome[]): void;
  reject(err: Error): void;
}

interface PendingSlot {
  item: BufferedEvent;
  request: PendingRequest;
  index: number;
}

/**
 * What the dedupe sets hold for an event: the first 132 bits of SHA-256(service, NUL, id),
 * as 22 characters of base64url. Ids are unique per service (ARCHITECTURE §11), so the
 * member must tell services apart: a hash keeps it short (the service name would add up to
 * 64 characters per member), and SHA-256 leaves no way to craft another service's member
 * from one's own ids. A string, not bytes: one Buffer argument puts the whole script call
 * in ioredis's buffer mode, every event's JSON copied into a Buffer of its own.
 */
export function dedupeMember(event: Pick<BufferedEvent['event'], 'service' | 'id'>): string {
  return hash('sha256', `${event.service}\u0000${event.id}`, 'base64url').slice(0, 22);
}
