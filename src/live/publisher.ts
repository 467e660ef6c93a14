import type { Logger } from 'pino';
import type { RedisLike } from '../buffer/redis-client.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { whenReady } from './connection.ts';
import { encodeEntry, type RequestPart, type StoredHeader } from './entry.ts';

export interface LivePublisherOptions {
  /**
   * A connection of the publisher's own, made on the first flush: its large writes are kept
   * out of the pipelines the buffer's writes share on the main client.
   */
  connect: () => RedisLike;
  /** The live stream (`keys.live`). */
  key: string;
  /** Entries the stream keeps (MAXLEN ~). */
  retainEntries: number;
  /**
   * Records of one outcome, service and type that carry their frame's body, per second; the
   * others carry only their header (what filters, visibility and `stats` need). No listener
   * sends more than LIVE_MAX_EVENTS_PER_S frames a second, so twice that is plenty, and a busy
   * API does not copy every event to Redis a second time to have nearly all of it thrown away.
   */
  bodiesPerSecond: number;
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
  /**
   * One record of `request`: its header (the request's place is the sink's to set) and the
   * rest of its frame; an empty rest for a header standing for records without a body.
   */
  publish(request: RequestPart, header: StoredHeader, rest: string): void;
  /** Whether a record of this kind carries its body now; absent, every record does. */
  wantsBody?(outcome: string, service: string | null, type: string | null): boolean;
  /** Changes whenever what was published so far is written: a header published before cannot be added to. */
  readonly generation?: number;
}

/**
 * Buffers this process's outcome records and writes them to the live stream together: one
 * XADD per flush (every `flushMs`, or sooner at `maxRecords` / `maxBytes`), so a busy API
 * pays one Redis command per flush, not per event. A failed flush is logged and counted and
 * its records are gone; ingest never waits for it or sees it fail.
 */
const NEWLINE = 0x0a;

export class LivePublisher implements LiveSink {
  readonly #opts: Required<Omit<LivePublisherOptions, 'connect' | 'metrics' | 'logger'>> &
    Pick<LivePublisherOptions, 'connect' | 'metrics' | 'logger'>;
  #connection: RedisLike | undefined;
  #requests: RequestPart[] = [];
  #requestIndex = new Map<RequestPart, number>();
  #headers: StoredHeader[] = [];
  /** The records' rests, "\n"-separated, encoded as they come: no string is joined or copied twice. */
  #data: Buffer | undefined;
  #bytes = 0;
  #chars = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #writes = new Set<Promise<void>>();
  #failureLogged = 0;
  readonly #bodies: BodyBudget;

  constructor(opts: LivePublisherOptions) {
    this.#opts = { flushMs: 100, maxRecords: 500, maxBytes: 128 * 1024, idleTtlMs: 600_000, ...opts };
    this.#bodies = new BodyBudget(opts.bodiesPerSecond);
  }

  generation = 0;

  wantsBody(outcome: string, service: string | null, type: string | null): boolean {
    return this.#bodies.take(outcome, service, type);
  }

  publish(request: RequestPart, header: StoredHeader, rest: string): void {
    // At most 3 bytes of UTF-8 per UTF-16 unit, and the separator.
    const room = rest.length * 3 + 1;
    if (this.#data && this.#bytes + room > this.#data.length) this.flush();
    this.#data ??= Buffer.allocUnsafeSlow(Math.max(this.#opts.maxBytes + 16_384, room));
    if (this.#headers.length > 0) this.#data[this.#bytes++] = NEWLINE;
    this.#bytes += this.#data.write(rest, this.#bytes);
    let index = this.#requestIndex.get(request);
    if (index === undefined) {
      index = this.#requests.push(request) - 1;
      this.#requestIndex.set(request, index);
      this.#chars += request.fields.length;
    }
    header[3] = index;
    this.#headers.push(header);
    // About what a header takes: close enough for a size cap.
    this.#chars += 80;
    if (this.#headers.length >= this.#opts.maxRecords || this.#bytes + this.#chars >= this.#opts.maxBytes) {
      this.flush();
    } else this.#timer ??= setTimeout(() => this.flush(), this.#opts.flushMs);
  }

  /** Writes what is buffered now; resolves when written (or failed). */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#headers.length === 0 || !this.#data) return Promise.resolve();
    const fields = encodeEntry(this.#requests, this.#headers, this.#data.subarray(0, this.#bytes));
    const records = this.#headers.reduce((n, h) => n + (h[6] ?? 1), 0);
    this.generation++;
    this.#requests = [];
    this.#requestIndex = new Map();
    this.#headers = [];
    this.#data = undefined;
    this.#bytes = 0;
    this.#chars = 0;
    const write = this.#write(fields, records);
    this.#writes.add(write);
    void write.finally(() => this.#writes.delete(write));
    return write;
  }

  async #write(fields: (string | Buffer)[], records: number): Promise<void> {
    const { key, retainEntries, idleTtlMs, metrics, logger } = this.#opts;
    try {
      this.#connection ??= this.#opts.connect();
      const redis = await whenReady(this.#connection);
      const replies = await redis
        .pipeline()
        .xadd(key, 'MAXLEN', '~', retainEntries, '*', ...fields)
        .pexpire(key, idleTtlMs)
        .exec();
      const failed = replies?.find(([err]) => err)?.[0];
      if (failed) throw failed;
      metrics.liveRecordsPublished.inc(records);
    } catch (err) {
      metrics.livePublishFailures.inc();
      // One line a minute at most: while Redis is away every flush fails.
      if (Date.now() - this.#failureLogged > 60_000) {
        this.#failureLogged = Date.now();
        logger.warn({ err, records }, 'live view: writing outcome records failed');
      }
    }
  }

  /** Flushes what is buffered and waits for every write under way. */
  async close(): Promise<void> {
    await this.flush();
    await Promise.all(this.#writes);
  }
}

/**
 * Per second, which records of each outcome, service and type carry a body: rare ones always
 * do (a refusal among thousands of accepted events is never left out); of frequent ones, one
 * in every `seen ÷ perSecond` of the second before, spread over the second rather than the
 * first ones of it, and never more than `perSecond`.
 */
export class BodyBudget {
  readonly #perSecond: number;
  #second = 0;
  /** Outcome → service → type → tally: looked up without making a key per record. */
  #tallies = new Map<string, Map<string | null, Map<string | null, Tally>>>();

  constructor(perSecond: number) {
    this.#perSecond = perSecond;
  }

  take(outcome: string, service: string | null, type: string | null, now = Date.now()): boolean {
    const second = Math.floor(now / 1000);
    if (second !== this.#second) this.#nextSecond(second);
    let byService = this.#tallies.get(outcome);
    if (!byService) {
      byService = new Map();
      this.#tallies.set(outcome, byService);
    }
    let byType = byService.get(service);
    if (!byType) {
      byType = new Map();
      byService.set(service, byType);
    }
    let tally = byType.get(type);
    if (!tally) {
      tally = { seen: 0, taken: 0, every: 1 };
      byType.set(type, tally);
    }
    const nth = tally.seen++;
    if (tally.taken >= this.#perSecond || nth % tally.every !== 0) return false;
    tally.taken++;
    return true;
  }

  #nextSecond(second: number): void {
    // After a second with nothing published, every record starts afresh.
    const quiet = second - this.#second > 1;
    this.#second = second;
    if (quiet) {
      this.#tallies = new Map();
      return;
    }
    for (const byService of this.#tallies.values()) {
      for (const [service, byType] of byService) {
        for (const [type, tally] of byType) {
          if (tally.seen === 0) byType.delete(type);
          else {
            tally.every = Math.max(1, Math.ceil(tally.seen / this.#perSecond));
            tally.seen = 0;
            tally.taken = 0;
          }
        }
        if (byType.size === 0) byService.delete(service);
      }
    }
  }
}

interface Tally {
  seen: number;
  taken: number;
  /** One record in this many carries its body this second. */
  every: number;
}
