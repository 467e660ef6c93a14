// The Server-Sent Events wire format (WHATWG HTML, "Parsing an event stream"), read from a
// fetch() body rather than by EventSource: EventSource cannot send an Authorization header,
// and the key must never go in a URL. Pure: no DOM, so it is unit-tested under Node.

/** One dispatched event. `id` is the stream's last event id when the event carried none. */
export interface SseFrame {
  event: string;
  data: string;
  id: string;
}

/**
 * Incremental parser: feed it decoded text as it arrives, in chunks cut anywhere; it returns
 * the frames each chunk completes. Comments (`: ping`) are dropped, `retry:` is kept.
 */
export class SseParser {
  #buffer = '';
  #event = '';
  #data: string[] = [];
  #lastId = '';
  #retryMs: number | undefined;
  /** A `\r` ended the previous chunk: a `\n` opening the next one belongs to it. */
  #pendingCr = false;

  /** The last `id:` seen (what a reconnect sends as Last-Event-ID). */
  get lastEventId(): string {
    return this.#lastId;
  }

  /** The last `retry:` the server asked for, in ms. */
  get retryMs(): number | undefined {
    return this.#retryMs;
  }

  push(chunk: string): SseFrame[] {
    let text = chunk;
    if (this.#pendingCr && text.startsWith('\n')) text = text.slice(1);
    this.#pendingCr = false;
    this.#buffer += text;
    const frames: SseFrame[] = [];
    for (;;) {
      const end = this.#buffer.search(/\r\n|\r|\n/);
      if (end < 0) break;
      const crlf = this.#buffer.startsWith('\r\n', end);
      // A lone \r at the very end may be half of a \r\n split across chunks.
      if (!crlf && this.#buffer[end] === '\r' && end === this.#buffer.length - 1) this.#pendingCr = true;
      const line = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + (crlf ? 2 : 1));
      const frame = this.#line(line);
      if (frame) frames.push(frame);
    }
    return frames;
  }

  #line(line: string): SseFrame | undefined {
    if (line === '') return this.#dispatch();
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.#event = value;
    else if (field === 'data') this.#data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.#lastId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.#retryMs = Number(value);
    return undefined;
  }

  #dispatch(): SseFrame | undefined {
    const data = this.#data;
    const event = this.#event || 'message';
    this.#data = [];
    this.#event = '';
    if (data.length === 0) return undefined;
    return { event, data: data.join('\n'), id: this.#lastId };
  }
}
