import type { Logger } from 'pino';
import type { RedisLike } from '../buffer/redis-client.ts';
import { whenReady } from './connection.ts';
import { decodeEntry, type LiveEntry } from './entry.ts';

export interface LiveReaderOptions {
  /** For the short reads (last entry, replays). */
  redis: RedisLike;
  /** A connection of its own for the blocking read, made on first use. */
  blockingRedis: (blockMs: number) => RedisLike;
  /** The live stream (`keys.live`). */
  key: string;
  logger: Logger;
  /** Called with each entry read, in order. */
  deliver(entry: LiveEntry): void;
  /** Whether to go on reading (some listener is open). */
  wanted(): boolean;
}

const BLOCK_MS = 1_000;
const READ_COUNT = 100;
const RETRY_MS = 1_000;

type RawEntry = [id: Buffer, fields: Buffer[]];

function decodeAll(raw: readonly RawEntry[]): LiveEntry[] {
  const out: LiveEntry[] = [];
  for (const [id, fields] of raw) {
    const entry = decodeEntry(id.toString(), fields);
    if (entry) out.push(entry);
  }
  return out;
}

/**
 * The one loop per process that reads the live stream while the process has listeners:
 * a blocking XREAD on a connection of its own, from the stream's last entry when it starts,
 * each entry decoded once and handed to `deliver`. It stops when no listener is left (after
 * at most one block) and starts again with the next one. Also reads past entries for
 * listeners that resume.
 */
export class LiveReader {
  readonly #opts: LiveReaderOptions;
  #connection: RedisLike | undefined;
  #running = false;
  #stopped = false;
  /** The last entry read; undefined until the loop has found where the stream ends. */
  #cursor: string | undefined;
  #started: Promise<void> | undefined;
  #markStarted: (() => void) | undefined;

  constructor(opts: LiveReaderOptions) {
    this.#opts = opts;
  }

  /** Starts the loop unless it runs. */
  ensureRunning(): void {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    this.#started = new Promise((resolve) => {
      this.#markStarted = resolve;
    });
    void this.#run();
  }

  /**
   * Resolves once the loop knows where it reads from: every entry after that point reaches
   * `deliver`, so a replay that starts after this misses nothing.
   */
  started(): Promise<void> {
    return this.#started ?? Promise.resolve();
  }

  stop(): void {
    this.#stopped = true;
    this.#markStarted?.();
  }

  /** The oldest entry's id, or undefined when the stream is empty or gone. */
  async oldest(): Promise<string | undefined> {
    const [first] = await this.#opts.redis.xrange(this.#opts.key, '-', '+', 'COUNT', 1);
    return first?.[0];
  }

  /**
   * Up to `count` entries from `start` (an id, `(id` for after it); `next` is where the
   * following page starts, undefined after the last.
   */
  async range(start: string, count: number): Promise<{ entries: LiveEntry[]; next: string | undefined }> {
    const raw = (await this.#opts.redis.xrangeBuffer(
      this.#opts.key,
      start,
      '+',
      'COUNT',
      count,
    )) as RawEntry[];
    const last = raw.at(-1);
    return {
      entries: decodeAll(raw),
      next: last && raw.length === count ? `(${last[0].toString()}` : undefined,
    };
  }

  async #run(): Promise<void> {
    const { redis, key, logger, deliver, wanted } = this.#opts;
    while (wanted() && !this.#stopped) {
      try {
        if (this.#cursor === undefined) {
          const [last] = await redis.xrevrange(key, '+', '-', 'COUNT', 1);
          this.#cursor = last?.[0] ?? '0-0';
          this.#markStarted?.();
        }
        const connection = await this.#ready();
        const reply = (await connection.xreadBuffer(
          'COUNT',
          READ_COUNT,
          'BLOCK',
          BLOCK_MS,
          'STREAMS',
          key,
          this.#cursor,
        )) as [key: Buffer, entries: RawEntry[]][] | null;
        for (const [, raw] of reply ?? []) {
          const last = raw.at(-1);
          if (last) this.#cursor = last[0].toString();
          for (const entry of decodeAll(raw)) deliver(entry);
        }
      } catch (err) {
        if (this.#stopped) break;
        logger.warn({ err }, 'live view: reading the live stream failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
    this.#running = false;
    this.#cursor = undefined;
    this.#markStarted?.();
  }

  /** The blocking connection, made on first use, once it is ready. */
  #ready(): Promise<RedisLike> {
    this.#connection ??= this.#opts.blockingRedis(BLOCK_MS);
    return whenReady(this.#connection);
  }
}
