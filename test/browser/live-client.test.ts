import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import type { Browser } from 'puppeteer-core';
import { test as base, describe, expect } from 'vitest';
import { consoleRoutes } from '../../src/console/serve.ts';
import { launchChromium, openPage, signIn, texts } from '../helpers/browser.ts';
import { waitFor } from '../helpers/stack.ts';

// The live page's client side of the live-view protocol, against a scripted server: the real
// console (built, served by serve.ts under its real policy) and a fake `GET /v1/events/live`
// whose frames and dropped connections the test decides. What a real server rarely does on
// cue (drop a stream, report a gap, start sampling, refuse the key) is checked here; the
// outcomes of real ingest are checked against the real server in live-page.test.ts.

const KEY = 'trb_consolelivecheckconsolelivecheck';

interface LiveRequest {
  query: URLSearchParams;
  headers: Headers;
  send(event: string, data: unknown, id?: string): void;
  end(): void;
}

interface FakeServer {
  url: string;
  /** Every request to the live route, in order. */
  live: LiveRequest[];
  /** The status the next live requests are answered with (200: a stream). */
  liveStatus: number;
  close(): Promise<void>;
}

async function startFakeServer(): Promise<FakeServer> {
  const state = { live: [] as LiveRequest[], liveStatus: 200 };
  const app = new Hono();
  app.get('/v1/whoami', (c) =>
    c.req.header('authorization') === `Bearer ${KEY}`
      ? c.json({ keyId: 'k1', name: 'live-check', scopes: ['read'], services: [] })
      : c.json({ error: { code: 'unauthorized', message: 'unknown key' } }, 401),
  );
  app.get('/v1/events/live', (c) => {
    if (state.liveStatus !== 200) {
      return c.json({ error: { code: 'unauthorized', message: 'unknown, revoked or expired API key' } }, 401);
    }
    const encoder = new TextEncoder();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
    });
    state.live.push({
      query: new URL(c.req.url).searchParams,
      headers: c.req.raw.headers,
      send(event, data, id) {
        const lines = [`event: ${event}`, ...(id ? [`id: ${id}`] : []), `data: ${JSON.stringify(data)}`];
        controller.enqueue(encoder.encode(`${lines.join('\n')}\n\n`));
      },
      end: () => controller.close(),
    });
    return c.body(body, 200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
  });
  app.route('/', consoleRoutes());
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get live() {
      return state.live;
    },
    get liveStatus() {
      return state.liveStatus;
    },
    set liveStatus(status: number) {
      state.liveStatus = status;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as unknown as { closeAllConnections?(): void }).closeAllConnections?.();
      }),
  };
}

const test = base
  // biome-ignore lint/correctness/noEmptyPattern: vitest's fixture syntax (test/helpers/fixtures.ts)
  .extend('server', { scope: 'file' }, async ({}, { onCleanup }) => {
    const server = await startFakeServer();
    onCleanup(() => server.close());
    return server;
  })
  // biome-ignore lint/correctness/noEmptyPattern: vitest's fixture syntax (test/helpers/fixtures.ts)
  .extend('browser', { scope: 'file' }, async ({}, { onCleanup }): Promise<Browser> => {
    const chromium = await launchChromium();
    onCleanup(() => chromium.close());
    return chromium.browser;
  })
  .extend('tab', async ({ browser, server, task }, { onCleanup }) => {
    server.live.length = 0;
    server.liveStatus = 200;
    const tab = await openPage(browser);
    onCleanup(async () => {
      await tab.screenshot(
        `live-client-${task.name.replace(/[^A-Za-z0-9]+/g, '-').toLowerCase()}`.slice(0, 100),
      );
      const problems = tab.problems();
      await tab.page.browserContext().close();
      expect(problems, 'console errors, page errors or CSP violations').toEqual([]);
    });
    return tab;
  });

const READY = {
  maxPerSecond: 50,
  heartbeatSeconds: 15,
  filters: { service: [], type: [], outcome: [] },
  resumed: false,
};

const accepted = (n: number) => ({
  outcome: 'accepted',
  at: new Date().toISOString(),
  route: '/v1/events',
  requestId: `r${n}`,
  keyId: 'k1',
  index: 0,
  id: `00000000-0000-4000-8000-00000000000${n}`,
  service: 'web-shop',
  type: 'order.paid',
  event: { id: `00000000-0000-4000-8000-00000000000${n}`, service: 'web-shop', type: 'order.paid' },
});

/** The live request number `n` (from 1), once the page has made it. */
const connection = (server: FakeServer, n: number) =>
  waitFor(async () => server.live[n - 1], 10_000, `live connection ${n}`);

describe('live view client', () => {
  test('resumes a dropped stream with Last-Event-ID and its key, and says when outcomes were missed', async ({
    server,
    tab,
  }) => {
    const { page } = tab;
    await signIn(page, server.url, KEY);
    const first = await connection(server, 1);
    expect(first.headers.get('authorization')).toBe(`Bearer ${KEY}`);
    expect(first.headers.get('last-event-id')).toBeNull();
    first.send('ready', READY);
    first.send('outcome', accepted(1), '1764885000000-0/0');
    await page.waitForSelector('.outcome-accepted');
    first.end();

    const second = await connection(server, 2);
    expect(second.headers.get('last-event-id')).toBe('1764885000000-0/0');
    expect(second.headers.get('authorization')).toBe(`Bearer ${KEY}`);
    second.send('ready', { ...READY, resumed: true });
    second.send('gap', { lastEventId: '1764885000000-0/0', reason: 'expired' });
    await page.waitForFunction(() => document.body.textContent?.includes('Some outcomes were missed'));
    await page.waitForFunction(() => document.querySelector('.live-status')?.textContent === 'Live');
    // What was listed before the drop is still there.
    expect(await page.$$('.outcome')).toHaveLength(1);
  });

  test('says when and how much the server samples, and when it stops', async ({ server, tab }) => {
    const { page } = tab;
    await signIn(page, server.url, KEY);
    const live = await connection(server, 1);
    live.send('ready', READY);
    live.send('sampling', { rate: 0.2, matchingPerSecond: 250, maxPerSecond: 50 });
    await page.waitForFunction(() => document.body.textContent?.includes('about 1 in 5 of 250 matching'));
    live.send('sampling', { rate: 1, matchingPerSecond: 20, maxPerSecond: 50 });
    await page.waitForFunction(() => !document.body.textContent?.includes('Sampling:'));
  });

  test('sends the filters as query parameters, keeps them in the address, and shows them after a reload', async ({
    server,
    tab,
  }) => {
    const { page } = tab;
    await signIn(page, server.url, KEY);
    await connection(server, 1);
    await page.type('input[name=service]', 'web-shop, billing');
    await page.click('input[name=outcome][value=refused]');
    await page.click('xpath/.//button[contains(., "Apply filters")]');
    const filtered = await connection(server, 2);
    expect(Object.fromEntries(filtered.query)).toEqual({ service: 'web-shop,billing', outcome: 'refused' });
    expect(await page.evaluate(() => window.location.hash)).toBe(
      '#/live?service=web-shop%2Cbilling&outcome=refused',
    );

    await page.reload();
    const reloaded = await connection(server, 3);
    expect(Object.fromEntries(reloaded.query)).toEqual({ service: 'web-shop,billing', outcome: 'refused' });
    expect(await page.$eval('input[name=service]', (e) => (e as HTMLInputElement).value)).toBe(
      'web-shop, billing',
    );
    expect(
      await page.$$eval('input[name=outcome]:checked', (els) =>
        els.map((e) => (e as HTMLInputElement).value),
      ),
    ).toEqual(['refused']);
  });

  test('a key the stream refuses signs the console out, with the code', async ({ server, tab }) => {
    const { page } = tab;
    tab.expectProblem(/status of 401/);
    await signIn(page, server.url, KEY);
    await connection(server, 1);
    server.liveStatus = 401;
    // A dropped stream is reopened, and the reopening is refused.
    server.live[0]?.end();
    await page.waitForSelector('#api-key');
    expect((await texts(page, '[role=alert]'))[0]).toContain('unauthorized');
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  });
});
