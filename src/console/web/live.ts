import { type ApiError, authHeaders, errorFrom, reportUnauthorized, storedKey } from './api.ts';
import { type SseFrame, SseParser } from './sse.ts';

// `GET /v1/events/live` over fetch() with a stream reader (the key goes in a header, which
// EventSource cannot send). A dropped stream is reopened with Last-Event-ID, so the server
// resumes where it left off (or says `gap` when it no longer holds that point).

export type LiveState =
  | { kind: 'connecting' }
  | { kind: 'open' }
  | { kind: 'retrying'; inMs: number; reason: string }
  | { kind: 'failed'; error: ApiError };

export interface LiveOptions {
  /** The filters (`service`, `type`, `outcome`), as the query string. */
  query: URLSearchParams;
  onFrame(frame: SseFrame): void;
  onState(state: LiveState): void;
}

/** Statuses worth trying again: the server or a proxy is busy or restarting. */
const RETRIABLE = new Set([429, 502, 503, 504]);
const MAX_BACKOFF_MS = 15_000;
/** Until the `ready` frame says otherwise: the protocol's default heartbeat. */
const DEFAULT_HEARTBEAT_S = 15;

/** One live stream, reopened until stopped; create another to change the filters. */
export class LiveConnection {
  readonly #opts: LiveOptions;
  #stopped = false;
  #abort: AbortController | undefined;
  #wake: (() => void) | undefined;
  #lastEventId = '';
  #failures = 0;
  #heartbeatS = DEFAULT_HEARTBEAT_S;

  constructor(opts: LiveOptions) {
    this.#opts = opts;
  }

  start(): void {
    void this.#run();
  }

  stop(): void {
    this.#stopped = true;
    this.#abort?.abort();
    this.#wake?.();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const retry = await this.#connect();
      if (this.#stopped || retry === undefined) return;
      const backoff = Math.min(MAX_BACKOFF_MS, 1_000 * 2 ** this.#failures);
      const inMs = Math.max(retry.afterMs ?? 0, backoff * (0.75 + Math.random() * 0.5));
      this.#failures++;
      this.#opts.onState({ kind: 'retrying', inMs, reason: retry.reason });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, inMs);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** One connection, read to its end. Returns when to retry, or undefined to give up. */
  async #connect(): Promise<{ reason: string; afterMs?: number } | undefined> {
    const key = storedKey();
    if (!key) return undefined;
    const abort = new AbortController();
    this.#abort = abort;
    this.#opts.onState({ kind: 'connecting' });
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    // No byte for two heartbeats: the connection is dead without having said so (a proxy, a
    // sleeping laptop); drop it and resume.
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => abort.abort(), (this.#heartbeatS * 2 + 5) * 1_000);
    };
    try {
      const query = this.#opts.query.toString();
      const res = await fetch(`/v1/events/live${query ? `?${query}` : ''}`, {
        headers: {
          ...authHeaders(key),
          accept: 'text/event-stream',
          ...(this.#lastEventId ? { 'last-event-id': this.#lastEventId } : {}),
        },
        signal: abort.signal,
        credentials: 'omit',
        cache: 'no-store',
      });
      if (!res.ok || !res.body) {
        const error = await errorFrom(res);
        if (RETRIABLE.has(res.status)) {
          const after = Number(res.headers.get('retry-after'));
          return { reason: error.code, ...(after > 0 ? { afterMs: after * 1_000 } : {}) };
        }
        this.#opts.onState({ kind: 'failed', error });
        if (res.status === 401) reportUnauthorized(error);
        return undefined;
      }
      this.#opts.onState({ kind: 'open' });
      this.#failures = 0;
      arm();
      const parser = new SseParser();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        arm();
        for (const frame of parser.push(value)) this.#frame(frame);
      }
      return { reason: 'the stream ended' };
    } catch {
      return this.#stopped ? undefined : { reason: 'the connection was lost' };
    } finally {
      clearTimeout(watchdog);
    }
  }

  #frame(frame: SseFrame): void {
    if (frame.id) this.#lastEventId = frame.id;
    if (frame.event === 'ready') {
      const seconds = (JSON.parse(frame.data) as { heartbeatSeconds?: unknown }).heartbeatSeconds;
      if (typeof seconds === 'number' && seconds > 0) this.#heartbeatS = seconds;
    }
    this.#opts.onFrame(frame);
  }
}
