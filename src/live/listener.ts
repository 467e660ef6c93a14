import type { Metrics } from '../telemetry/metrics.ts';
import { compareIds, type LiveEntry, type LiveOutcome } from './entry.ts';
import { type LiveFilters, recordFilter, type Viewer } from './filter.ts';
import { Sampler } from './sampler.ts';

/** Why a listener's stream ended (logged). */
export type CloseReason = 'client_gone' | 'slow_client' | 'shutdown';

export interface LiveListenerOptions {
  viewer: Viewer;
  filters: LiveFilters;
  maxPerSecond: number;
  heartbeatMs: number;
  /** Frames waiting for a slow client, in bytes, beyond which it is cut off. */
  maxBufferedBytes?: number;
  metrics: Pick<Metrics, 'liveFramesDropped'>;
  onClose(listener: LiveListener, reason: CloseReason): void;
}

const encoder = new TextEncoder();
const PING = encoder.encode(': ping\n\n');
const DATA_END = encoder.encode('\n\n');
/** Live entries held while a resuming listener replays what it missed; more, and it is cut off. */
const MAX_QUEUED_ENTRIES = 2_000;

/**
 * One live-view connection: its filters and visibility, its sampler and per-second stats,
 * and the SSE frames it writes to `stream`. It is offered every entry the process reads
 * and never waits: frames go into the stream's queue, and a client that lets more than
 * `maxBufferedBytes` pile up there is cut off (the dropped frame counted) rather than held in
 * memory; it reconnects with Last-Event-ID and resumes where its last frame left off.
 */
export class LiveListener {
  readonly stream: ReadableStream<Uint8Array>;
  readonly openedAt = Date.now();
  /** Outcome frames sent, and dropped for a slow client. */
  sent = 0;
  dropped = 0;
  /** The last entry offered, so a replay and the live read never send one twice. */
  cursor = '0-0';
  readonly #opts: LiveListenerOptions;
  readonly #wanted: ReturnType<typeof recordFilter>;
  readonly #sampler: Sampler;
  readonly #stats: Record<LiveOutcome, number> = { accepted: 0, duplicate: 0, skipped: 0, refused: 0 };
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  readonly #timers: NodeJS.Timeout[] = [];
  #closed = false;
  /** Live entries that arrived while replaying; undefined when not replaying. */
  #queued: LiveEntry[] | undefined;

  constructor(opts: LiveListenerOptions) {
    this.#opts = opts;
    this.#wanted = recordFilter(opts.viewer, opts.filters);
    this.#sampler = new Sampler(opts.maxPerSecond, Date.now());
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#controller = controller;
        },
        cancel: () => this.close('client_gone'),
      },
      { highWaterMark: opts.maxBufferedBytes ?? 1_048_576, size: (chunk) => chunk.byteLength },
    );
    this.#timers.push(
      setInterval(() => this.#tick(), 1_000).unref(),
      setInterval(() => this.#write(PING), opts.heartbeatMs).unref(),
    );
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The first frame: settings, filters, and whether it resumes. */
  ready(resumed: boolean): void {
    const { maxPerSecond, heartbeatMs, filters } = this.#opts;
    this.#event('ready', {
      maxPerSecond,
      heartbeatSeconds: heartbeatMs / 1000,
      filters: { service: filters.service, type: filters.type, outcome: filters.outcome },
      resumed,
    });
  }

  /** The client's Last-Event-ID is older than what is kept: it continues from the oldest entry. */
  gap(lastEventId: string): void {
    this.#event('gap', { lastEventId, reason: 'expired' });
  }

  /** From now until {@link endReplay}, live entries wait while a replay is offered. */
  beginReplay(): void {
    this.#queued ??= [];
  }

  /** The replay is over: the live entries that arrived meanwhile, less those it covered. */
  endReplay(): void {
    const queued = this.#queued ?? [];
    this.#queued = undefined;
    for (const entry of queued) this.offer(entry);
  }

  /**
   * An entry of the live stream: each record this listener wants counts in its stats (unless
   * replayed: those seconds are past) and, when the sampler keeps it, is sent as an
   * `outcome` frame. `fromIndex` skips the records of a resumed entry the client has.
   */
  offer(entry: LiveEntry, replayed = false, fromIndex = 0): void {
    if (this.#closed) return;
    if (this.#queued && !replayed) {
      this.#queued.push(entry);
      if (this.#queued.length > MAX_QUEUED_ENTRIES) this.close('slow_client');
      return;
    }
    if (compareIds(entry.id, this.cursor) <= 0) return;
    this.cursor = entry.id;
    const now = Date.now();
    const headers = entry.headers;
    for (let i = fromIndex; i < headers.length; i++) {
      const header = headers[i];
      if (!header || !this.#wanted(header)) continue;
      if (!replayed) this.#stats[header[0]] += header[5];
      if (!this.#sampler.offer(now, entry.sendable(i), header[5])) continue;
      const frame = entry.frame(i);
      if (frame) this.#outcome(entry.id, i, frame);
      if (this.#closed) return;
    }
    this.#announceSampling();
  }

  /** Ends the stream (idempotent); frames already queued are still delivered. */
  close(reason: CloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearInterval(timer);
    try {
      this.#controller?.close();
    } catch {
      // Already cancelled by the client.
    }
    this.#opts.onClose(this, reason);
  }

  #outcome(entryId: string, index: number, data: Buffer): void {
    const head = encoder.encode(`event: outcome\nid: ${entryId}/${index}\ndata: `);
    const frame = new Uint8Array(head.length + data.length + DATA_END.length);
    frame.set(head, 0);
    frame.set(data, head.length);
    frame.set(DATA_END, head.length + data.length);
    if (this.#write(frame)) {
      this.sent++;
      return;
    }
    this.dropped++;
    this.#opts.metrics.liveFramesDropped.inc();
    this.close('slow_client');
  }

  #tick(): void {
    const now = Date.now();
    this.#sampler.endWindow(now);
    this.#announceSampling();
    this.#event('stats', { at: new Date(now).toISOString(), ...this.#stats });
    this.#stats.accepted = 0;
    this.#stats.duplicate = 0;
    this.#stats.skipped = 0;
    this.#stats.refused = 0;
  }

  #announceSampling(): void {
    const change = this.#sampler.takeChange();
    if (change) this.#event('sampling', change);
  }

  #event(name: string, data: unknown): void {
    this.#write(encoder.encode(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`));
  }

  /** Queues a chunk; false when closed or when the client has let too much pile up. */
  #write(chunk: Uint8Array): boolean {
    const controller = this.#controller;
    if (this.#closed || !controller) return false;
    if ((controller.desiredSize ?? 0) <= 0) return false;
    controller.enqueue(chunk);
    return true;
  }
}
