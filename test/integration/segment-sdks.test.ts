import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import RudderAnalytics from '@rudderstack/rudder-sdk-node';
import { Analytics } from '@segment/analytics-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Stack, startStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * The real SDKs (ARCHITECTURE §12), pointed at Tributary with only their host changed, send
 * thousands of mixed calls through a proxy that makes them retry: it drops the response of
 * some requests after Tributary accepted them (a timeout as the SDK sees it) and answers others
 * 503 with Retry-After without passing them on. Every call is stored exactly once.
 */
const SERVICE = 'web-shop';
let stack: Stack;
let writeKey: string;
let proxy: Server;
let proxyUrl: string;
const seen = { forwarded: 0, dropped: 0, refused: 0 };

/** Forwards to the API; the 4th, 9th, 14th… request's answer is dropped, every 7th is a 503. */
function startFlakyProxy(target: string): Promise<Server> {
  const upstream = new URL(target);
  let n = 0;
  const server = createServer((req, res) => {
    n++;
    if (n % 7 === 0) {
      seen.refused++;
      req.resume();
      res.writeHead(503, { 'retry-after': '0', 'content-type': 'application/json' });
      res.end('{"error":{"code":"buffer_unavailable","message":"proxy says retry"}}');
      return;
    }
    const drop = n % 5 === 4;
    const out = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        path: req.url,
        method: req.method,
        headers: req.headers,
      },
      (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('end', () => {
          seen.forwarded++;
          if (drop) {
            // Tributary has the batch; the SDK sees the connection die and sends it again.
            seen.dropped++;
            req.socket.destroy();
            return;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(Buffer.concat(chunks));
        });
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

beforeAll(async () => {
  stack = await startStack({ workers: 1 });
  const res = await call(stack.url, '/v1/admin/keys', {
    body: { name: 'sdk write key', scopes: ['ingest'], services: [SERVICE] },
  });
  expect(res.status).toBe(201);
  writeKey = res.body.key;
  proxy = await startFlakyProxy(stack.url);
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => proxy?.close(r));
  await stack?.close();
});

type Call =
  | {
      kind: 'track';
      userId: string;
      anonymousId?: string;
      event: string;
      properties: Record<string, unknown>;
    }
  | { kind: 'identify'; userId: string; anonymousId?: string; traits: Record<string, unknown> }
  | { kind: 'page'; userId: string; name: string; properties: Record<string, unknown> }
  | { kind: 'screen'; userId: string; name: string; properties: Record<string, unknown> }
  | { kind: 'group'; userId: string; groupId: string; traits: Record<string, unknown> }
  | { kind: 'alias'; userId: string; previousId: string };

/** `n` calls of every kind, each with its own userId (`run-i`), so each row can be counted. */
function mixedCalls(run: string, n: number): Call[] {
  return Array.from({ length: n }, (_, i): Call => {
    const userId = `${run}-${i}`;
    switch (i % 8) {
      case 0:
      case 1:
      case 2:
        return {
          kind: 'track',
          userId,
          ...(i % 3 === 0 ? { anonymousId: `anon-${run}-${i}` } : {}),
          event: i % 2 ? 'Order Completed' : 'Product Viewed',
          properties: { i, price: 12.5, sku: `sku-${i % 13}`, tags: ['a', 'b'], nested: { ok: true } },
        };
      case 3:
        return { kind: 'identify', userId, anonymousId: `anon-${run}-${i}`, traits: { plan: 'pro', i } };
      case 4:
        return { kind: 'page', userId, name: 'Checkout', properties: { path: '/checkout', i } };
      case 5:
        return { kind: 'screen', userId, name: 'Home', properties: { i } };
      case 6:
        return { kind: 'group', userId, groupId: `org-${i % 5}`, traits: { seats: i } };
      default:
        return { kind: 'alias', userId, previousId: `anon-${run}-${i}` };
    }
  });
}

const expectedType = (c: Call) => (c.kind === 'track' ? c.event : c.kind);

/** Waits until every call of the run is a row, then checks each is there exactly once, as sent. */
async function expectStoredOnce(run: string, calls: Call[]): Promise<void> {
  const count = async () =>
    (
      await stack.env.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM events WHERE service = $1 AND user_id LIKE $2`,
        [SERVICE, `${run}-%`],
      )
    ).rows[0]?.n ?? 0;
  await waitFor(async () => (await count()) >= calls.length, 60_000, `${calls.length} rows of ${run}`);
  const { rows } = await stack.env.pool.query<{
    user_id: string;
    type: string;
    anonymous_id: string | null;
    metadata: Record<string, unknown> | null;
    n: number;
  }>(
    `SELECT user_id, min(type) AS type, min(anonymous_id) AS anonymous_id, (array_agg(metadata))[1] AS metadata,
            count(*)::int AS n
       FROM events WHERE service = $1 AND user_id LIKE $2 GROUP BY user_id`,
    [SERVICE, `${run}-%`],
  );
  const byUser = new Map(rows.map((r) => [r.user_id, r]));
  expect(rows.length).toBe(calls.length);
  for (const c of calls) {
    const row = byUser.get(c.userId);
    expect(row?.n, c.userId).toBe(1);
    expect(row?.type, c.userId).toBe(expectedType(c));
    if ('anonymousId' in c && c.anonymousId) expect(row?.anonymous_id, c.userId).toBe(c.anonymousId);
    if (c.kind === 'alias') expect(row?.metadata?.previousId, c.userId).toBe(c.previousId);
    if (c.kind === 'track') expect(row?.metadata?.properties, c.userId).toEqual(c.properties);
  }
}

describe('the real Segment and RudderStack SDKs', () => {
  it('@segment/analytics-node delivers thousands of mixed calls exactly once through retries', async () => {
    const run = `seg${Date.now()}`;
    const calls = mixedCalls(run, 2_000);
    const analytics = new Analytics({
      writeKey,
      host: proxyUrl,
      flushAt: 100,
      flushInterval: 200,
      maxRetries: 10,
    });
    const failures: unknown[] = [];
    analytics.on('error', (err) => failures.push(err));
    for (const c of calls) {
      const { kind, ...params } = c;
      if (kind === 'alias') analytics.alias(params as { userId: string; previousId: string });
      else if (kind === 'track') analytics.track(params as Parameters<Analytics['track']>[0]);
      else if (kind === 'identify') analytics.identify(params as Parameters<Analytics['identify']>[0]);
      else if (kind === 'page') analytics.page(params as Parameters<Analytics['page']>[0]);
      else if (kind === 'screen') analytics.screen(params as Parameters<Analytics['screen']>[0]);
      else analytics.group(params as Parameters<Analytics['group']>[0]);
    }
    await analytics.closeAndFlush({ timeout: 120_000 });
    expect(failures).toEqual([]);
    expect(seen.dropped).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(0);
    await expectStoredOnce(run, calls);
  }, 180_000);

  it('@rudderstack/rudder-sdk-node (gzip by default) delivers thousands of mixed calls exactly once through retries', async () => {
    const run = `rud${Date.now()}`;
    const calls = mixedCalls(run, 2_000);
    const before = { ...seen };
    const failures: unknown[] = [];
    const client = new RudderAnalytics(writeKey, {
      dataPlaneUrl: proxyUrl,
      flushAt: 100,
      flushInterval: 200,
      retryCount: 10,
      logLevel: 'error',
      errorHandler: (err: unknown) => failures.push(err),
    } as ConstructorParameters<typeof RudderAnalytics>[1]);
    for (const c of calls) {
      const { kind, ...params } = c;
      (client[kind] as (m: unknown) => void).call(client, params);
    }
    // flush() sends one batch of flushAt; the queue is drained by calling it until empty.
    const queue = (client as unknown as { queue: unknown[] }).queue;
    while (queue.length > 0) await client.flush();
    await client.flush();
    expect(failures).toEqual([]);
    expect(seen.dropped).toBeGreaterThan(before.dropped);
    expect(seen.refused).toBeGreaterThan(before.refused);
    await expectStoredOnce(run, calls);
  }, 180_000);
});
