import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A real HTTP API for the HTTP source tests: one dataset of records served by each pagination
 * kind, behind bearer, basic or header auth, with faults a test arms per request (a 429 with
 * Retry-After, a 5xx, a page slower than the timeout, a body over the size limit). Every
 * request is logged with what was answered.
 */
export interface ApiRecord {
  id: string;
  kind: string;
  user: { id: string };
  created_at: string;
}

export type Fault =
  | { status: 429; retryAfter: string }
  | { status: 500 | 502 | 503 }
  | { delayMs: number }
  | { hugeBytes: number };

export interface SourceApi {
  url: string;
  records: ApiRecord[];
  /** Requests seen: path with query, and the status answered. */
  log: { path: string; status: number; at: number }[];
  /** Faults to answer the next requests whose path and query start with the key, in order. */
  faults: Map<string, Fault[]>;
  add(n: number): void;
  close(): Promise<void>;
}

export const API_TOKEN = 'api-token-5f0c2a9e7d1b';
export const API_USER = 'reader';
export const API_PASSWORD = 'pw-c4e1b7a2d9f3';
export const API_HEADER = { name: 'X-Api-Key', value: 'hdr-91b2c7e4a5d6' };

function record(i: number): ApiRecord {
  return {
    id: `r-${i}`,
    kind: i % 3 === 0 ? 'ticket.closed' : 'ticket.opened',
    user: { id: `u-${i % 7}` },
    created_at: new Date(Date.UTC(2026, 11, 1, 0, 0, 0) + i * 1000).toISOString(),
  };
}

const authorised = (req: IncomingMessage, scheme: string): boolean => {
  if (scheme === 'bearer') return req.headers.authorization === `Bearer ${API_TOKEN}`;
  if (scheme === 'basic') {
    return (
      req.headers.authorization === `Basic ${Buffer.from(`${API_USER}:${API_PASSWORD}`).toString('base64')}`
    );
  }
  if (scheme === 'header') return req.headers[API_HEADER.name.toLowerCase()] === API_HEADER.value;
  return true;
};

/**
 * Routes: `/{auth}/{kind}` where auth is `bearer|basic|header|open` and kind is
 * `cursor` (`?cursor=`, `{data:{items}, next}`), `offset` (`?offset&limit`, `{data:{items}}`),
 * `page` (`?page&per_page`, first page 1, `{data:{items}}`) or `link` (`?p=`, `Link: rel="next"`,
 * a bare array); `/open/plain` answers the whole dataset as a bare array.
 */
export async function startSourceApi(count: number): Promise<SourceApi> {
  const records = Array.from({ length: count }, (_, i) => record(i + 1));
  const log: SourceApi['log'] = [];
  const faults = new Map<string, Fault[]>();
  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const at = Date.now();
    const [, scheme = '', kind = ''] = url.pathname.split('/');
    const pathQuery = `${url.pathname}${url.search}`;
    const answer = (status: number, body: unknown, headers?: Record<string, string>) => {
      log.push({ path: pathQuery, status, at });
      send(res, status, body, headers);
    };
    if (!authorised(req, scheme)) return answer(401, { error: 'unauthorized' });
    const key = [...faults.keys()].find((k) => pathQuery.startsWith(k) && (faults.get(k)?.length ?? 0) > 0);
    const fault = key === undefined ? undefined : faults.get(key)?.shift();
    if (fault && 'status' in fault) {
      return answer(
        fault.status,
        { error: 'fault' },
        'retryAfter' in fault ? { 'retry-after': fault.retryAfter } : {},
      );
    }
    if (fault && 'delayMs' in fault) await new Promise((r) => setTimeout(r, fault.delayMs));
    if (fault && 'hugeBytes' in fault) {
      return answer(200, { data: { items: [{ id: 'x', pad: 'x'.repeat(fault.hugeBytes) }] } });
    }
    const q = (name: string, dflt: number) => Number(url.searchParams.get(name) ?? dflt);
    if (kind === 'cursor') {
      const from = url.searchParams.has('cursor')
        ? Number(Buffer.from(url.searchParams.get('cursor') as string, 'base64url').toString())
        : 0;
      const items = records.slice(from, from + 25);
      const end = from + items.length;
      const next = end < records.length ? Buffer.from(String(end)).toString('base64url') : null;
      return answer(200, { data: { items }, next });
    }
    if (kind === 'offset') {
      const offset = q('offset', 0);
      return answer(200, { data: { items: records.slice(offset, offset + q('limit', 10)) } });
    }
    if (kind === 'page') {
      const size = q('per_page', 10);
      const page = q('page', 1);
      return answer(200, { data: { items: records.slice((page - 1) * size, page * size) } });
    }
    if (kind === 'link') {
      const p = q('p', 0);
      const items = records.slice(p * 30, p * 30 + 30);
      const more = (p + 1) * 30 < records.length;
      return answer(
        200,
        items,
        more ? { link: `</${scheme}/link?p=${p + 1}>; rel="next", </${scheme}/link?p=0>; rel="first"` } : {},
      );
    }
    if (kind === 'plain') return answer(200, records);
    if (kind === 'elsewhere')
      return answer(200, [records[0]], { link: '<http://127.0.0.2:1/x>; rel="next"' });
    return answer(404, { error: 'no such route' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    records,
    log,
    faults,
    add(n) {
      const start = records.length;
      for (let i = 1; i <= n; i++) records.push(record(start + i));
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
