import { setTimeout as sleep } from 'node:timers/promises';
import {
  type ReadBatch,
  type ReadRecord,
  SourceError,
  type SourceProbe,
  type SourceReader,
} from './errors.ts';
import { valueAt } from './mapping.ts';
import type { Auth, HttpSourceConfig } from './settings.ts';

/**
 * An HTTP API source (ARCHITECTURE §15): pages through an API's records with one of four
 * pagination kinds, authenticated with a bearer token, basic credentials or a header. One
 * page is one batch; its position is committed once its records are buffered, so a crash
 * reads the same page again (the records' ids make that a duplicate, never a second row)
 * and no page is skipped. `429` with `Retry-After` is waited out and `5xx`, timeouts and
 * dropped connections are retried with backoff, on the same page. At the end of the pages
 * the position stays where new records will appear (the last cursor, offset, page or link).
 */

export interface HttpReaderOptions {
  /** One request, headers and body, may take this long. */
  timeoutMs: number;
  /** A response body over this many bytes is refused. */
  maxBytes: number;
  /** A `Retry-After` up to this is waited out in the run; longer ends the run until then. */
  maxRetryAfterMs: number;
  /** Attempts of one page through 5xx, timeouts and connection errors before the run fails. */
  attempts?: number;
  /** The first backoff; it doubles per attempt (with jitter). */
  backoffMs?: number;
}

/** Milliseconds a `Retry-After` value asks for: delay-seconds or an HTTP date; undefined when unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The `rel="next"` target of an RFC 8288 `Link` header, resolved against `base`; undefined when none. */
export function nextLink(header: string | null, base: string): string | undefined {
  if (!header) return undefined;
  for (const m of header.matchAll(/<([^>]*)>\s*((?:;\s*[^;,]+)*)/g)) {
    const params = m[2] ?? '';
    const rel = /;\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))/i.exec(params);
    const rels = (rel?.[1] ?? rel?.[2] ?? '').toLowerCase().split(/\s+/);
    if (rels.includes('next')) {
      try {
        return new URL(m[1] as string, base).toString();
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

function authHeaders(auth: Auth | undefined): Record<string, string> {
  if (!auth) return {};
  if (auth.type === 'bearer') return { authorization: `Bearer ${auth.token}` };
  if (auth.type === 'basic') {
    return { authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` };
  }
  return { [auth.name]: auth.value };
}

/** The body, at most `max` bytes (refused beyond, declared or not). */
async function readLimited(res: Response, max: number): Promise<string> {
  const tooLarge = () =>
    new SourceError('source_unreadable', 'url', `the response is larger than the limit of ${max} bytes`);
  const declared = Number(res.headers.get('content-length') ?? Number.NaN);
  if (declared > max) {
    await res.body?.cancel().catch(() => {});
    throw tooLarge();
  }
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    total += chunk.byteLength;
    if (total > max) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const jittered = (ms: number) => Math.round(ms * (0.8 + Math.random() * 0.4));

export class HttpSourceReader implements SourceReader {
  readonly #config: HttpSourceConfig;
  readonly #headers: Record<string, string>;
  readonly #opts: Required<HttpReaderOptions>;
  readonly #origin: string;

  constructor(config: HttpSourceConfig, auth: Auth | undefined, opts: HttpReaderOptions) {
    this.#config = config;
    this.#headers = { accept: 'application/json', 'user-agent': 'tributary-source', ...authHeaders(auth) };
    this.#opts = { attempts: 5, backoffMs: 500, ...opts };
    this.#origin = new URL(config.url).origin;
  }

  /** The request of the page at `position` (null: the first). */
  #pageUrl(position: Record<string, unknown> | null): URL {
    const p = this.#config.pagination;
    if (p?.type === 'link') {
      const url = typeof position?.url === 'string' ? position.url : this.#config.url;
      return new URL(url);
    }
    const url = new URL(this.#config.url);
    if (p?.type === 'cursor' && typeof position?.cursor === 'string')
      url.searchParams.set(p.param, position.cursor);
    if (p?.type === 'offset') {
      url.searchParams.set(p.param, String(typeof position?.offset === 'number' ? position.offset : 0));
      url.searchParams.set(p.limitParam, String(p.limit));
    }
    if (p?.type === 'page') {
      url.searchParams.set(p.param, String(typeof position?.page === 'number' ? position.page : p.first));
      url.searchParams.set(p.sizeParam, String(p.size));
    }
    return url;
  }

  /** One page's JSON and `Link` header, through 429s, 5xx, timeouts and dropped connections. */
  async #get(url: URL, signal: AbortSignal): Promise<{ body: unknown; link: string | null }> {
    const { attempts, backoffMs, timeoutMs, maxBytes, maxRetryAfterMs } = this.#opts;
    let failures = 0;
    let limited = 0;
    for (;;) {
      let res: Response;
      let problem: string;
      try {
        res = await fetch(url, {
          headers: this.#headers,
          redirect: 'error',
          signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
        });
        if (res.status === 429) {
          await res.body?.cancel().catch(() => {});
          const wait = retryAfterMs(res.headers.get('retry-after')) ?? jittered(backoffMs * 2 ** limited);
          limited++;
          if (wait > maxRetryAfterMs || limited > 20) {
            throw new SourceError(
              'source_rate_limited',
              'url',
              `the API answered 429 and asks to wait ${Math.ceil(wait / 1000)} s`,
              wait,
            );
          }
          await sleep(wait, undefined, { signal });
          continue;
        }
        if (res.status === 401 || res.status === 403) {
          await res.body?.cancel().catch(() => {});
          throw new SourceError(
            'source_unauthorized',
            'auth',
            `the API answered ${res.status} for ${url.pathname}`,
          );
        }
        if (res.status >= 500) {
          await res.body?.cancel().catch(() => {});
          problem = `the API answered ${res.status}`;
        } else if (!res.ok) {
          await res.body?.cancel().catch(() => {});
          throw new SourceError(
            'source_unreadable',
            'url',
            `the API answered ${res.status} for ${url.pathname}`,
          );
        } else {
          const text = await readLimited(res, maxBytes);
          try {
            return { body: JSON.parse(text) as unknown, link: res.headers.get('link') };
          } catch {
            throw new SourceError('source_unreadable', 'url', `the response to ${url.pathname} is not JSON`);
          }
        }
      } catch (err) {
        if (err instanceof SourceError || signal.aborted) throw err;
        const e = err as { name?: string; cause?: { code?: string; message?: string }; message?: string };
        problem =
          e.name === 'TimeoutError'
            ? `no complete answer within ${timeoutMs} ms`
            : `the request failed: ${e.cause?.code ?? e.cause?.message ?? e.message ?? String(err)}`;
      }
      failures++;
      if (failures >= attempts) {
        throw new SourceError('source_unreachable', 'url', `${problem} (${failures} attempts)`);
      }
      await sleep(jittered(backoffMs * 2 ** (failures - 1)), undefined, { signal });
    }
  }

  /** The records of a response, at `dataPath` (the response itself without one). */
  #records(body: unknown): unknown[] {
    const at = this.#config.dataPath;
    const data = at === undefined ? body : valueAt(body, at);
    if (!Array.isArray(data)) {
      throw new SourceError(
        'source_unreadable',
        'dataPath',
        at === undefined
          ? 'the response is not an array: name where the records are with dataPath'
          : `the response has no array at "${at}"`,
      );
    }
    return data;
  }

  async next(position: Record<string, unknown> | null, signal: AbortSignal): Promise<ReadBatch> {
    const url = this.#pageUrl(position);
    const { body, link } = await this.#get(url, signal);
    const data = this.#records(body);
    const records: ReadRecord[] = data.map((record) => ({ record }));
    const n = data.length;
    const p = this.#config.pagination;
    switch (p?.type) {
      case undefined:
        return { records, position: null, more: false };
      case 'cursor': {
        const raw = valueAt(body, p.nextPath);
        const next = typeof raw === 'string' || typeof raw === 'number' ? String(raw) : '';
        if (next !== '' && n > 0) return { records, position: { cursor: next }, more: true };
        // The end: the next run asks for this page again, where new records will appear.
        return { records, position: position ?? null, more: false };
      }
      case 'offset': {
        const offset = typeof position?.offset === 'number' ? position.offset : 0;
        return { records, position: { offset: offset + n }, more: n >= p.limit };
      }
      case 'page': {
        const page = typeof position?.page === 'number' ? position.page : p.first;
        return n >= p.size
          ? { records, position: { page: page + 1 }, more: true }
          : { records, position: { page }, more: false };
      }
      case 'link': {
        const next = nextLink(link, url.toString());
        if (next !== undefined && new URL(next).origin !== this.#origin) {
          throw new SourceError(
            'source_unreadable',
            'pagination',
            `the next page is on another origin (${new URL(next).origin}); its credentials are not sent there`,
          );
        }
        if (next !== undefined && n > 0) return { records, position: { url: next }, more: true };
        return { records, position: { url: url.toString() }, more: false };
      }
    }
  }

  /** Reads the first page: reachable, authenticated, records where `dataPath` says. */
  async probe(sampleSize: number, signal: AbortSignal): Promise<SourceProbe> {
    const first = await this.next(null, signal);
    const fields = new Map<string, string>();
    for (const { record } of first.records.slice(0, sampleSize)) {
      if (record && typeof record === 'object' && !Array.isArray(record)) {
        for (const [k, v] of Object.entries(record)) {
          if (!fields.has(k)) fields.set(k, v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
        }
      }
    }
    return {
      fields: [...fields].map(([name, type]) => ({ name, type })),
      estimatedRecords: first.more ? null : first.records.length,
      sample: { ...first, records: first.records.slice(0, sampleSize) },
    };
  }

  async close(): Promise<void> {}
}
