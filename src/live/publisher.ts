import type { Logger } from 'pino';
import type { RedisLike } from '../buffer/redis-client.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { encodeEntry, type RecordHeader } from './entry.ts';

export interface LivePublisherOptions {
  redis: RedisLike;
  /** The live stream (`keys.live`). */
  key: string;
  /** Entries the stream keeps (MAXLEN ~). */
  retainEntries: number;
  metrics: Pick<Metrics, 'liveRecordsPublished' | 'livePublishFailures'>;
  logger: Logger;
  /** How long records wait to be written together. */
  flushMs?: number;
  maxRecords?: number;
  maxBytes?: number;
  /** The stream goes this long after its last write: nothing stays in Redis once nobody listens. */
  idleTtlMs?: number;
}

/** Where ingest hands its outcome records (the publisher, or a test's list). */
export interface LiveSink {
  publish(header: RecordHeader, line: string): void;
}

/**
 * Buffers this process's outcome records and writes them to the live stream together: one
 * XADD per flush (every `flushMs`, or sooner at `maxRecords` / `maxBytes`), so a busy API
 * pays one Redis command per flush, not per event. A failed flush is logged and counted and
 * its records are gone; ingest never waits for it or sees it fail.
 */
export class LivePublisher implements LiveSink {
  readonly #opts: Required<Omit<LivePublisherOptions, 'redis' | 'metrics' | 'logger'>> &
    Pick<LivePublisherOptions, 'redis' | 'metrics' | 'logger'>;
  #headers: RecordHeader[] = [];
  #lines: string[] = [];
  #chars = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #writes = new Set<Promise<void>>();
  #failureLogged = 0;

  constructor(opts: LivePublisherOptions) {
    this.#opts = { flushMs: 100, maxRecords: 500, maxBytes: 128 * 1024, idleTtlMs: 600_000, ...opts };
  }

  publish(header: RecordHeader, line: string): void {
    this.#headers.push(header);
    this.#lines.push(line);
    // UTF-16 units: close enough to bytes for a size cap.
    this.#chars += line.length;
    if (this.#headers.length >= this.#opts.maxRecords || this.#chars >= this.#opts.maxBytes) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), this.#opts.flushMs);
  }

  /** Writes what is buffered now; resolves when written (or failed). */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#headers.length === 0) return Promise.resolve();
    const headers = this.#headers;
    const lines = this.#lines;
    this.#headers = [];
    this.#lines = [];
    this.#chars = 0;
    const write = this.#write(headers, lines);
    this.#writes.add(write);
    void write.finally(() => this.#writes.delete(write));
    return write;
  }

  async #write(headers: RecordHeader[], lines: string[]): Promise<void> {
    const { redis, key, retainEntries, idleTtlMs, metrics, logger } = this.#opts;
    try {
      const fields = encodeEntry(headers, lines);
      // Both commands go out together (auto-pipelining), on the one key.
      await Promise.all([
        redis.xadd(key, 'MAXLEN', '~', retainEntries, '*', ...fields),
        redis.pexpire(key, idleTtlMs),
      ]);
      metrics.liveRecordsPublished.inc(headers.length);
    } catch (err) {
      metrics.livePublishFailures.inc();
      // One line a minute at most: while Redis is away every flush fails.
      if (Date.now() - this.#failureLogged > 60_000) {
        this.#failureLogged = Date.now();
        logger.warn({ err, records: headers.length }, 'live view: writing outcome records failed');
      }
    }
  }

  /** Flushes what is buffered and waits for every write under way. */
  async close(): Promise<void> {
    await this.flush();
    await Promise.all(this.#writes);
  }
}
