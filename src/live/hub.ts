import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { BufferKeys } from '../buffer/keys.ts';
import type { RedisLike } from '../buffer/redis-client.ts';
import type { Config } from '../config.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { compareIds, type ResumePoint } from './entry.ts';
import type { LiveFilters, Viewer } from './filter.ts';
import { type CloseReason, LiveListener } from './listener.ts';
import { LivePresence } from './presence.ts';
import { LivePublisher } from './publisher.ts';
import { LiveReader } from './reader.ts';

export interface LiveHubOptions {
  config: Pick<Config, 'LIVE_MAX_EVENTS_PER_S' | 'LIVE_HEARTBEAT_S' | 'LIVE_RETAIN_ENTRIES'>;
  redis: RedisLike;
  /** A new connection (the reader's blocking one, the publisher's own), made on first use. */
  blockingRedis: (blockMs: number) => RedisLike;
  keys: Pick<BufferKeys, 'live' | 'liveListeners'>;
  metrics: Pick<
    Metrics,
    'liveListeners' | 'liveRecordsPublished' | 'livePublishFailures' | 'liveFramesDropped'
  >;
  logger: Logger;
}

export interface OpenOptions {
  viewer: Viewer;
  filters: LiveFilters;
  /** Where the client resumes (its Last-Event-ID), as sent and as parsed. */
  resume?: { lastEventId: string; point: ResumePoint } | undefined;
  /** For the log line at close. */
  requestId: string;
  /** Told why the stream ended. */
  onClose?: (reason: CloseReason) => void;
}

const REPLAY_PAGE = 100;

/**
 * The live view of one API process (ARCHITECTURE §13): the publisher ingest hands outcome
 * records to while anyone listens anywhere (`active`), the presence that tells, and this
 * process's listeners with the one reader loop that feeds them from the live stream, which
 * every API process writes. Listeners on any process therefore see what every process
 * ingested.
 */
export class LiveHub {
  readonly publisher: LivePublisher;
  readonly #opts: LiveHubOptions;
  readonly #presence: LivePresence;
  readonly #reader: LiveReader;
  readonly #listeners = new Map<LiveListener, string>();
  readonly #member = `${hostname()}:${process.pid}`;

  constructor(opts: LiveHubOptions) {
    this.#opts = opts;
    const { redis, keys, logger, metrics, config } = opts;
    this.#presence = new LivePresence({ redis, key: keys.liveListeners, logger });
    this.publisher = new LivePublisher({
      connect: () => opts.blockingRedis(1_000),
      key: keys.live,
      retainEntries: config.LIVE_RETAIN_ENTRIES,
      bodiesPerSecond: 2 * config.LIVE_MAX_EVENTS_PER_S,
      metrics,
      logger,
    });
    this.#reader = new LiveReader({
      redis,
      blockingRedis: opts.blockingRedis,
      key: keys.live,
      logger,
      deliver: (entry) => {
        for (const listener of this.#listeners.keys()) listener.offer(entry);
      },
      wanted: () => this.#listeners.size > 0,
    });
  }

  /** Whether anyone has the live view open, on any API process: ingest publishes only then. */
  get active(): boolean {
    return this.#presence.active;
  }

  /** Starts looking for listeners (every API process does, listeners or not). */
  start(): void {
    this.#presence.start();
  }

  /** A new listener: its stream starts with `ready`, replays what it missed when it resumes, then goes live. */
  open(opts: OpenOptions): LiveListener {
    const { config, metrics, logger } = this.#opts;
    const listener = new LiveListener({
      viewer: opts.viewer,
      filters: opts.filters,
      maxPerSecond: config.LIVE_MAX_EVENTS_PER_S,
      heartbeatMs: config.LIVE_HEARTBEAT_S * 1000,
      metrics,
      onClose: (closed, reason) => {
        this.#closed(closed, reason, opts.requestId);
        opts.onClose?.(reason);
      },
    });
    listener.ready(opts.resume !== undefined);
    const member = `${this.#member}:${randomUUID()}`;
    this.#listeners.set(listener, member);
    this.#presence.register(member);
    metrics.liveListeners.inc();
    if (opts.resume) {
      listener.beginReplay();
      const { lastEventId, point } = opts.resume;
      void this.#replay(listener, lastEventId, point).catch((err: unknown) => {
        logger.warn({ err, requestId: opts.requestId }, 'live view: replay failed');
        listener.close('client_gone');
      });
    }
    this.#reader.ensureRunning();
    return listener;
  }

  /** Ends every stream (shutdown): frames queued are delivered, then each response ends. */
  closeStreams(): void {
    for (const listener of [...this.#listeners.keys()]) listener.close('shutdown');
  }

  /** Ends every stream, stops looking and reading, and writes the records still buffered. */
  async close(): Promise<void> {
    this.closeStreams();
    this.#presence.stop();
    this.#reader.stop();
    await this.publisher.close();
  }

  /**
   * Sends `listener` what the stream holds after `point` (its records after `point.index` in
   * that entry), or after a `gap` everything it holds when `point` was trimmed away, then
   * hands it to the live read without a repeat or a hole: the reader's start point is known
   * before the replay reads, and entries it delivers meanwhile wait in the listener.
   */
  async #replay(listener: LiveListener, lastEventId: string, point: ResumePoint): Promise<void> {
    try {
      await this.#reader.started();
      const oldest = await this.#reader.oldest();
      const expired = oldest === undefined || compareIds(point.entry, oldest) < 0;
      if (expired) listener.gap(lastEventId);
      if (oldest === undefined) return;
      let start: string | undefined = expired ? oldest : point.entry;
      while (start !== undefined && !listener.closed) {
        const page = await this.#reader.range(start, REPLAY_PAGE);
        for (const entry of page.entries) {
          const fromIndex = !expired && entry.id === point.entry ? point.index + 1 : 0;
          listener.offer(entry, true, fromIndex);
        }
        start = page.next;
      }
    } finally {
      listener.endReplay();
    }
  }

  #closed(listener: LiveListener, reason: CloseReason, requestId: string): void {
    const member = this.#listeners.get(listener);
    if (member === undefined) return;
    this.#listeners.delete(listener);
    this.#presence.unregister(member);
    this.#opts.metrics.liveListeners.dec();
    this.#opts.logger.info(
      {
        requestId,
        reason,
        seconds: Math.round((Date.now() - listener.openedAt) / 100) / 10,
        frames: listener.sent,
        dropped: listener.dropped,
      },
      'live listener closed',
    );
  }
}
