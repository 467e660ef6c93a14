import type { StreamConsumer, StreamEntry } from './consumer.ts';
import { type BufferKeys, ENTRY_FORMAT_VERSION, partitionOfStream } from './keys.ts';
import type { RedisLike } from './redis-client.ts';

export interface DeadLetter {
  entry: StreamEntry;
  /** Why it could not be stored. */
  error: string;
}

export interface DeadLetterOptions {
  redis: RedisLike;
  keys: BufferKeys;
}

/** The dead-letter stream: entries that cannot be stored, kept with their error for an operator. */
export class DeadLetterStream {
  readonly #redis: RedisLike;
  readonly #keys: BufferKeys;

  constructor(opts: DeadLetterOptions) {
    this.#redis = opts.redis;
    this.#keys = opts.keys;
  }

  /**
   * Moves entries to the dead-letter stream, then acknowledges and deletes them from their
   * partition. The copy is written first, so a crash in between leaves a duplicate, never a loss.
   */
  async move(letters: readonly DeadLetter[], consumer: StreamConsumer): Promise<void> {
    if (letters.length === 0) return;
    await this.record(letters);
    await consumer.ack(letters.map((l) => l.entry));
  }

  /**
   * Writes dead letters without acknowledging anything: for events that are no longer in
   * a stream (replayed from the disk checkpoint). `sourceId` may then be `checkpoint`.
   */
  async record(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const pipeline = this.#redis.pipeline();
    const at = new Date().toISOString();
    for (const { entry, error } of letters) {
      pipeline.xadd(
        this.#keys.deadLetter,
        '*',
        'stream',
        this.#keys.stream(entry.partition),
        'sourceId',
        entry.id,
        'v',
        entry.version ?? ENTRY_FORMAT_VERSION,
        'e',
        entry.event ?? '',
        'tp',
        entry.traceparent ?? '',
        'error',
        error.slice(0, 2000),
        'deliveries',
        String(entry.deliveries),
        'at',
        at,
      );
    }
    const replies = (await pipeline.exec()) ?? [];
    const failed = replies.find(([err]) => err);
    if (failed?.[0]) throw failed[0];
  }

  /** Number of dead-lettered entries. */
  async count(): Promise<number> {
    return this.#redis.xlen(this.#keys.deadLetter);
  }

  /**
   * Moves up to `limit` dead-lettered entries back to the stream they came from (as new
   * entries), oldest first, and returns how many moved.
   */
  async replay(limit: number): Promise<number> {
    const rows = (await this.#redis.xrange(this.#keys.deadLetter, '-', '+', 'COUNT', limit)) as [
      string,
      string[],
    ][];
    let replayed = 0;
    for (const [id, flat] of rows) {
      const fields: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
      const partition = partitionOfStream(fields.stream ?? '');
      // An entry from a stream this deployment no longer has goes to partition 0.
      const target = this.#keys.stream(partition >= 0 && partition < this.#keys.partitions ? partition : 0);
      await this.#redis.xadd(
        target,
        '*',
        'v',
        fields.v ?? ENTRY_FORMAT_VERSION,
        'e',
        fields.e ?? '',
        'tp',
        fields.tp ?? '',
      );
      await this.#redis.xdel(this.#keys.deadLetter, id);
      replayed++;
    }
    return replayed;
  }
}
