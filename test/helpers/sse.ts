import { ADMIN_KEY } from './env.ts';
import { checkResponse } from './openapi.ts';

/** One Server-Sent Events frame; a comment (`: ping`) has the event name `:`. */
export interface SseFrame {
  event: string;
  id: string | undefined;
  /** The `data:` parsed as JSON (the live view's data is always one JSON line). */
  // biome-ignore lint/suspicious/noExplicitAny: frames are inspected field by field
  data: any;
  /** The comment's text, for `:` frames. */
  comment?: string;
  /** When it arrived (ms). */
  at: number;
}

export interface SseClient {
  status: number;
  headers: Headers;
  /** The error body, when the status is not 200. */
  // biome-ignore lint/suspicious/noExplicitAny: test responses are inspected field by field
  body: any;
  /** Every frame so far, in order. */
  frames: SseFrame[];
  /** Frames named `event` so far. */
  named(event: string): SseFrame[];
  /** Resolves with the first frame (from `from` on) matching `pred`. */
  next(pred: (f: SseFrame) => boolean, timeoutMs?: number, from?: number): Promise<SseFrame>;
  /** Resolves once `count` frames named `event` match `pred`, with them. */
  collect(
    event: string,
    count: number,
    pred?: (f: SseFrame) => boolean,
    timeoutMs?: number,
  ): Promise<SseFrame[]>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  close(): void;
}

export interface SseOptions {
  key?: string | null;
  /** Query string, without `?`. */
  query?: string;
  lastEventId?: string;
}

/**
 * Opens `GET /v1/events/live` with `fetch()` and a Bearer key, as the console does (no
 * EventSource), and parses frames as they arrive. The response is checked against the
 * OpenAPI document; a refusal comes back with `status` and `body` and no frames.
 */
export async function openLive(baseUrl: string, opts: SseOptions = {}): Promise<SseClient> {
  const path = `/v1/events/live${opts.query ? `?${opts.query}` : ''}`;
  const headers: Record<string, string> = {};
  const key = opts.key === undefined ? ADMIN_KEY : opts.key;
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (opts.lastEventId !== undefined) headers['last-event-id'] = opts.lastEventId;
  const abort = new AbortController();
  const res = await fetch(`${baseUrl}${path}`, { headers, signal: abort.signal });
  const contentType = res.headers.get('content-type');
  const streaming = res.status === 200;
  const text = streaming ? undefined : await res.text();
  checkResponse({ method: 'GET', path, status: res.status, contentType, text });

  const frames: SseFrame[] = [];
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  let ended: Promise<void> = Promise.resolve();
  if (streaming && res.body) {
    const decoder = new TextDecoder();
    const reader = res.body.getReader();
    ended = (async () => {
      let buffer = '';
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end = buffer.indexOf('\n\n');
          while (end !== -1) {
            const frame = parseFrame(buffer.slice(0, end));
            if (frame) frames.push(frame);
            buffer = buffer.slice(end + 2);
            end = buffer.indexOf('\n\n');
          }
          notify();
        }
      } catch {
        // Aborted by close().
      }
      notify();
    })();
  }
  let isEnded = false;
  void ended.then(() => {
    isEnded = true;
    notify();
  });

  const next = (pred: (f: SseFrame) => boolean, timeoutMs = 10_000, from = 0) =>
    new Promise<SseFrame>((resolve, reject) => {
      const check = () => {
        const found = frames.slice(from).find(pred);
        if (found) {
          done();
          resolve(found);
        } else if (isEnded) {
          done();
          reject(new Error(`the stream ended without the frame; frames: ${describe(frames)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no matching frame within ${timeoutMs} ms; frames: ${describe(frames)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  return {
    status: res.status,
    headers: res.headers,
    body: text === undefined ? undefined : JSON.parse(text),
    frames,
    named: (event) => frames.filter((f) => f.event === event),
    next,
    async collect(event, count, pred = () => true, timeoutMs = 10_000) {
      const matching = () => frames.filter((f) => f.event === event && pred(f));
      await next(() => matching().length >= count, timeoutMs);
      return matching();
    },
    ended,
    close: () => abort.abort(),
  };
}

function parseFrame(block: string): SseFrame | undefined {
  let event = 'message';
  let id: string | undefined;
  const data: string[] = [];
  let comment: string | undefined;
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) comment = line.slice(1).trim();
    else if (line.startsWith('event: ')) event = line.slice(7);
    else if (line.startsWith('id: ')) id = line.slice(4);
    else if (line.startsWith('data: ')) data.push(line.slice(6));
  }
  if (data.length === 0) {
    return comment === undefined ? undefined : { event: ':', id, data: undefined, comment, at: Date.now() };
  }
  return { event, id, data: JSON.parse(data.join('\n')), at: Date.now() };
}

function describe(frames: SseFrame[]): string {
  return JSON.stringify(
    frames.slice(-20).map((f) => (f.event === ':' ? `:${f.comment}` : { e: f.event, id: f.id, d: f.data })),
  ).slice(0, 3000);
}
