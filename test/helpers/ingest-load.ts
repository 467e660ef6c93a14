import { UndocumentedResponse } from './openapi.ts';
import { call, event } from './stack.ts';
import { sleep } from './wait.ts';

export interface IngestLoadOptions {
  /** Base URL of the API, or a function naming one per request (several API processes). */
  url: string | (() => string);
  /** Requests in flight at once: one sender loop each. */
  senders?: number;
  /** Events per batch request. */
  batchSize?: number;
  /** Every fourth request a single event (`POST /v1/events`) instead of a batch. */
  singles?: boolean;
  /**
   * Client-set timestamps. Without one, a resent event lands at another receive time, so
   * only the API's id memory in Redis keeps it from a second row; with one, a resend has
   * the same primary key `(id, occurred_at)` even when Redis has forgotten the id.
   */
  timestamps?: boolean;
  /**
   * Send a refused or failed request again, with the same ids, until it is acknowledged
   * (a well-behaved producer). Off: it is only counted in {@link IngestLoad.refusals}.
   */
  resend?: boolean;
  /** The senders stop once this many new events were sent (resends aside). */
  limit?: number;
  /** Pause of a sender after each acknowledged request (pacing). */
  pauseMs?: number;
  /** Pause of a sender after a refused or failed request, before it goes on. */
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
/** The events of one request, and whether it goes to `POST /v1/events` (one event) or the batch route. */
interface Request {
  events: Ev[];
  single: boolean;
}

/**
 * The client's side of a load or fault test: sends events and remembers exactly which ids
 * the API acknowledged (202), and when, so the end state can be counted against it.
 */
export class IngestLoad {
  /** id → when the request that was answered 202 for it was sent, and when the 202 arrived. */
  readonly acknowledged = new Map<string, { sentAt: number; at: number }>();
  /** Every id sent at least once. */
  readonly sent = new Set<string>();
  readonly exchanges: Exchange[] = [];
  /** Answers that break the contract (a 202 whose ids are not the ones sent, …). */
  readonly anomalies: string[] = [];
  readonly #o: Required<Omit<IngestLoadOptions, 'limit'>> & { limit: number };
  readonly #retry: Request[] = [];
  #running = false;
  #loops: Promise<void>[] = [];
  #requests = 0;

  constructor(opts: IngestLoadOptions) {
    this.#o = {
      senders: 4,
      batchSize: 50,
      singles: true,
      timestamps: false,
      resend: true,
      limit: Number.POSITIVE_INFINITY,
      pauseMs: 0,
      pauseAfterFailureMs: 100,
      ...opts,
    };
  }

  /** Events of refused or failed requests not yet acknowledged (with `resend`). */
  get unacknowledged(): number {
    return this.#retry.reduce((n, r) => n + r.events.length, 0);
  }

  /** Requests not answered 202, by status (0: failed at the socket). */
  get refusals(): Map<number, number> {
    const out = new Map<number, number>();
    for (const x of this.exchanges) if (x.status !== 202) out.set(x.status, (out.get(x.status) ?? 0) + 1);
    return out;
  }

  /** Every request by status, for a test's summary line. */
  statuses(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const x of this.exchanges) out[x.status] = (out[x.status] ?? 0) + 1;
    return out;
  }

  /** Starts the senders; they run until {@link stop} or the `limit`. */
  start(): void {
    this.#running = true;
    this.#loops = Array.from({ length: this.#o.senders }, () => this.#loop());
  }

  /** Starts the senders and resolves when they end (give a `limit`, or stop them elsewhere). */
  async run(): Promise<void> {
    this.start();
    await Promise.all(this.#loops);
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
      const request = this.#retry.shift() as Request;
      if (!(await this.#send(request, true)).acknowledged) await sleep(this.#o.pauseAfterFailureMs);
    }
  }

  /** One batch request of `size` new events, never resent; resolves with the HTTP status (0: socket error). */
  async sendBatch(size: number): Promise<number> {
    const { exchange } = await this.#send({ events: this.#fresh(size), single: false }, false);
    return exchange.status;
  }

  async #loop(): Promise<void> {
    while (this.#running && (this.#retry.length > 0 || this.sent.size < this.#o.limit)) {
      const { acknowledged } = await this.#send(this.#retry.shift() ?? this.#next(), this.#o.resend);
      const pause = acknowledged ? this.#o.pauseMs : this.#o.pauseAfterFailureMs;
      if (pause > 0) await sleep(pause);
    }
  }

  #next(): Request {
    const single = this.#o.singles && this.#requests % 4 === 0;
    return { events: this.#fresh(single ? 1 : this.#o.batchSize), single };
  }

  /** New events, counted as sent at once (so concurrent senders stop at the `limit`). */
  #fresh(count: number): Ev[] {
    const n = this.#requests++;
    return Array.from({ length: count }, (_, i) => {
      const e = event({ userId: `u${n % 97}-${i % 13}` });
      if (this.#o.timestamps) e.timestamp = new Date().toISOString();
      this.sent.add(e.id as string);
      return e;
    });
  }

  /** One request; unless acknowledged, it is queued to be sent again if `resend`. */
  async #send(request: Request, resend: boolean): Promise<{ exchange: Exchange; acknowledged: boolean }> {
    const { events, single } = request;
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
      if (resend) this.#retry.push(request);
      return { exchange, acknowledged: false };
    }
    const expected = events.map((e) => e.id as string);
    if (ids.length !== expected.length || ids.some((id, i) => id !== expected[i])) {
      this.anomalies.push(`202 with ids ${JSON.stringify(ids)} for ${JSON.stringify(expected)}`);
    }
    for (const id of ids) this.acknowledged.set(id, { sentAt, at: exchange.doneAt });
    return { exchange, acknowledged: true };
  }
}

/**
 * The load of the database fault tests: batches only (one sender unless told), and a refused
 * batch is counted in `refusals`, never resent, so every acknowledged id was answered 202 on
 * its one try.
 */
export function batchLoad(
  url: string,
  opts: Pick<IngestLoadOptions, 'senders' | 'batchSize' | 'limit' | 'pauseMs'>,
): IngestLoad {
  return new IngestLoad({ senders: 1, ...opts, url, singles: false, resend: false });
}
