import type { StreamConsumer } from './consumer.ts';
import { type BufferKeys, ENTRY_FORMAT_VERSION, partitionOfStream } from './keys.ts';
import { isCluster, type RedisLike } from './redis-client.ts';
import { entryFields } from './redis-reply.ts';
import { type BufferRedis, registerScripts } from './scripts.ts';
import type { StreamEntry } from './stream-entry.ts';

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
  readonly #redis: BufferRedis;
  readonly #keys: BufferKeys;

  constructor(opts: DeadLetterOptions) {
    this.#redis = registerScripts(opts.redis);
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
   * Every dead letter, oldest first, `pageSize` at a time: one XRANGE of one key per page,
   * so it works the same on a Redis Cluster. Entries added while it reads may be included.
   */
  async *pages(pageSize = READ_PAGE): AsyncGenerator<ReadLetter[]> {
    let start = '-';
    for (;;) {
      const rows = (await this.#redis.xrange(this.#keys.deadLetter, start, '+', 'COUNT', pageSize)) as [
        string,
        unknown,
      ][];
      if (rows.length > 0) yield rows.map(([id, flat]) => ({ id, fields: entryFields(flat) }));
      const last = rows.at(-1);
      if (!last || rows.length < pageSize) return;
      start = `(${last[0]}`;
    }
  }

  /**
   * Deletes dead letters of a subject being erased and adds how many were still there to
   * the `deadLetter` count of erasure request `requestId` (keys.dsarDropped). On one server
   * both happen in one script call (lua/erase-dead.lua), atomic with respect to a replay:
   * an entry is either replayed (and then dropped by the workers as erased) or deleted
   * here, and counted once. On a Redis Cluster the two keys are in different hash slots:
   * delete, then count (a crash in between loses the count of that call, never an entry).
   * @returns the number deleted.
   */
  async erase(ids: readonly string[], requestId: string): Promise<number> {
    if (ids.length === 0) return 0;
    const counts = this.#keys.dsarDropped(requestId);
    if (!isCluster(this.#redis)) {
      return Number(
        await this.#redis.tributaryEraseDead(
          this.#keys.deadLetter,
          counts,
          'deadLetter',
          COUNTS_TTL_S,
          ...ids,
        ),
      );
    }
    const deleted = await this.#redis.xdel(this.#keys.deadLetter, ...ids);
    if (deleted > 0) {
      await this.#redis.hincrby(counts, 'deadLetter', deleted);
      await this.#redis.expire(counts, COUNTS_TTL_S);
    }
    return deleted;
  }

  /**
   * Moves up to `limit` dead-lettered entries back to the stream they came from (as new
   * entries), oldest first, and returns how many moved. On one Redis server each batch
   * moves in one script call (lua/replay-dead.lua): an entry is never both dead and
   * buffered, and concurrent replays never re-add one twice. On a Redis Cluster it goes
   * entry by entry (`#replayEach`).
   */
  async replay(limit: number): Promise<number> {
    const rows = (await this.#redis.xrange(this.#keys.deadLetter, '-', '+', 'COUNT', limit)) as [
      string,
      unknown,
    ][];
    const letters = rows.map(([id, flat]) => ({ id, fields: entryFields(flat) }));
    if (isCluster(this.#redis)) return this.#replayEach(letters);
    let replayed = 0;
    for (let from = 0; from < letters.length; from += REPLAY_PER_CALL) {
      replayed += await this.#replayBatch(letters.slice(from, from + REPLAY_PER_CALL));
    }
    return replayed;
  }

  /** One script call: these dead letters back to their partitions, if still there. */
  async #replayBatch(letters: readonly ReadLetter[]): Promise<number> {
    const targets: string[] = [];
    const args: string[] = [];
    for (const { id, fields } of letters) {
      const target = this.#targetOf(fields);
      let index = targets.indexOf(target);
      if (index < 0) index = targets.push(target) - 1;
      // KEYS[1] is the dead-letter stream: the targets start at KEYS[2].
      args.push(id, String(index + 2));
    }
    const keys = [this.#keys.deadLetter, ...targets];
    return Number(await this.#redis.tributaryReplayDead(keys.length, ...keys, ENTRY_FORMAT_VERSION, ...args));
  }

  /**
   * Replay on a Redis Cluster, where the dead-letter stream and a partition stream are in
   * different hash slots and no script or MULTI can span them: per entry, copy then
   * delete, so a crash in between leaves a duplicate (stored once: rows are inserted by
   * event id, ON CONFLICT DO NOTHING), never a loss. When the delete finds the entry gone,
   * another replay moved it meanwhile, and this copy is taken back.
   */
  async #replayEach(letters: readonly ReadLetter[]): Promise<number> {
    let replayed = 0;
    for (const { id, fields } of letters) {
      const target = this.#targetOf(fields);
      const copy = await this.#redis.xadd(
        target,
        '*',
        'v',
        fields.v ?? ENTRY_FORMAT_VERSION,
        'e',
        fields.e ?? '',
        'tp',
        fields.tp ?? '',
      );
      if ((await this.#redis.xdel(this.#keys.deadLetter, id)) > 0) replayed++;
      else if (copy) await this.#redis.xdel(target, copy);
    }
    return replayed;
  }

  /** The partition stream a dead letter goes back to: the one it came from, if this deployment still has it. */
  #targetOf(fields: Record<string, string>): string {
    const partition = partitionOfStream(fields.stream ?? '');
    // An entry from a stream this deployment no longer has goes to partition 0.
    return this.#keys.stream(partition >= 0 && partition < this.#keys.partitions ? partition : 0);
  }
}

/** Dead letters moved per script call; bounds how long Redis runs one script. */
const REPLAY_PER_CALL = 500;
/** Dead letters read per XRANGE by {@link DeadLetterStream.pages}. */
const READ_PAGE = 500;
/** How long an erasure request's counts stay in Redis (as the workers' drop counts do). */
const COUNTS_TTL_S = 30 * 86_400;

/** A dead letter as read: its id in the dead-letter stream and its fields (`e` is the event JSON). */
export interface ReadLetter {
  id: string;
  fields: Record<string, string>;
}
