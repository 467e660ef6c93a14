import { UndocumentedResponse } from './openapi.ts';
import { call, event } from './stack.ts';

export interface IngestLoadOptions {
  /** Base URL of the API, or a function naming one per request (several API processes). */
  url: string | (() => string);
  /** Requests in flight at once. */
  senders?: number;
  /** Events per batch request; every fourth request is a single event instead. */
  batchSize?: number;
  /**
   * Client-set timestamps. Without one, a resent event lands at another receive time, so
   * only the API's id memory in Redis keeps it from a second row; with one, a resend has
   * the same primary key `(id, occurred_at)` even when Redis has forgotten the id.
   */
  timestamps?: boolean;
  /** Pause of a sender after a refused request, before it resends. */
  pauseAfterFailureMs?: number;
}

/** One HTTP exchange of the load generator. */
export interface Exchange {
  sentAt: number;
  doneAt: number;
  /** HTTP status, or 0 when the request failed at the socket. */
  status: number;
  events: number;
  retryAfter: string | null;
  code: string | undefined;
}

type Ev = Record<string, unknown>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A client that keeps ingesting, as a well-behaved producer would: it records every id
 * answered 202 and sends every refused or failed request again, with the same ids, until
 * it is acknowledged.
 */
export class IngestLoad {
  /** id → when the request that was answered 202 for it was sent, and when the 202 arrived. */
  readonly acknowledged = new Map<string, { sentAt: number; at: number }>();
  /** Every id sent at least once. */
  readonly sent = new Set<string>();
  readonly exchanges: Exchange[] = [];
  /** Answers that break the contract (a 202 whose ids are not the ones sent, …). */
  readonly anomalies: string[] = [];
  readonly #o: Required<IngestLoadOptions>;
  readonly #retry: Ev[][] = [];
  #running = false;
  #loops: Promise<void>[] = [];
  #n = 0;

  constructor(opts: IngestLoadOptions) {
    this.#o = { senders: 4, batchSize: 50, timestamps: false, pauseAfterFailureMs: 100, ...opts };
  }

  /** Requests refused or failed and not yet acknowledged. */
  get unacknowledged(): number {
    return this.#retry.reduce((n, events) => n + events.length, 0);
  }

  start(): void {
    this.#running = true;
    this.#loops = Array.from({ length: this.#o.senders }, () => this.#loop());
  }

  /** Stops sending new events; resends are left for {@link drain}. */
  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }

  /** Resends every unacknowledged request until all are acknowledged. */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#retry.length > 0) {
      if (Date.now() > deadline) throw new Error(`${this.unacknowledged} events still unacknowledged`);
      const events = this.#retry.shift() as Ev[];
      if (!(await this.#send(events))) await sleep(this.#o.pauseAfterFailureMs);
    }
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      const events = this.#retry.shift() ?? this.#fresh();
      if (!(await this.#send(events))) await sleep(this.#o.pauseAfterFailureMs);
    }
  }

  #fresh(): Ev[] {
    const n = this.#n++;
    const count = n % 4 === 0 ? 1 : this.#o.batchSize;
    return Array.from({ length: count }, () => {
      const e = event({ userId: `u${Math.floor(Math.random() * 1000)}` });
      if (this.#o.timestamps) e.timestamp = new Date().toISOString();
      this.sent.add(e.id as string);
      return e;
    });
  }

  /** One request; true when acknowledged, else the events are queued for a resend. */
  async #send(events: Ev[]): Promise<boolean> {
    const single = events.length === 1;
    const sentAt = Date.now();
    let exchange: Exchange;
    let ids: string[] | undefined;
    try {
      const url = typeof this.#o.url === 'string' ? this.#o.url : this.#o.url();
      const res = single
        ? await call(url, '/v1/events', { body: events[0] })
        : await call(url, '/v1/events/batch', { body: { events } });
      exchange = {
        sentAt,
        doneAt: Date.now(),
        status: res.status,
        events: events.length,
        retryAfter: res.headers.get('retry-after'),
        code: res.body?.error?.code,
      };
      if (res.status === 202) ids = single ? [res.body.id] : res.body.ids;
    } catch (err) {
      // An answer the OpenAPI document does not describe breaks the contract too.
      if (err instanceof UndocumentedResponse) this.anomalies.push(err.message);
      exchange = {
        sentAt,
        doneAt: Date.now(),
        status: 0,
        events: events.length,
        retryAfter: null,
        code: undefined,
      };
    }
    this.exchanges.push(exchange);
    if (!ids) {
      this.#retry.push(events);
      return false;
    }
    const expected = events.map((e) => e.id as string);
    if (ids.length !== expected.length || ids.some((id, i) => id !== expected[i])) {
      this.anomalies.push(`202 with ids ${JSON.stringify(ids)} for ${JSON.stringify(expected)}`);
    }
    for (const id of ids) this.acknowledged.set(id, { sentAt, at: exchange.doneAt });
    return true;
  }
}
