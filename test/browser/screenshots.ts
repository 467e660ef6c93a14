/**
 * `npm run screenshots`: the README's pictures of the console (ops/screenshots/), taken in
 * Debian's Chromium from a real stack (serve + work, its own database and Redis prefix,
 * removed at the end) while a minute of mixed traffic goes through it, so the throughput
 * chart has something to draw. Not a test: it asserts nothing but that each page rendered.
 */
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Page } from 'puppeteer-core';
import { launchChromium, openPage, signIn } from '../helpers/browser.ts';
import { ADMIN_KEY } from '../helpers/env.ts';
import { call, event, startStack } from '../helpers/stack.ts';
import { sleep } from '../helpers/wait.ts';

const OUT = fileURLToPath(new URL('../../ops/screenshots/', import.meta.url));
const TRAFFIC_S = Number(process.env.SCREENSHOT_TRAFFIC_S ?? 45);

const SERVICES = ['web-shop', 'billing', 'mobile-app'];
const TYPES = ['order.paid', 'cart.updated', 'invoice.sent', 'user.signup', 'page.viewed'];
const pick = <T>(list: readonly T[], i: number): T => list[i % list.length] as T;

/** One second's requests: a wave of accepted events, a few refused ones, now and then a re-send. */
async function second(url: string, s: number): Promise<void> {
  const size = Math.round(25 + 20 * Math.sin(s / 6));
  const events = Array.from({ length: size }, (_, i) =>
    event({ service: pick(SERVICES, i + s), type: pick(TYPES, i * 3 + s), userId: `u-${(i * 7 + s) % 40}` }),
  );
  const refused = s % 3 === 0 ? [{ service: 'web-shop', type: 'order.paid', timestamp: 'yesterday' }] : [];
  const noService = s % 5 === 0 ? [{ type: 'cart.updated', metadata: { items: 2 } }] : [];
  await call(url, '/v1/events/batch', { body: { events: [...events, ...refused, ...noService] } });
  if (s % 4 === 0) await call(url, '/v1/events', { body: events[0] });
}

async function shoot(page: Page, name: string): Promise<void> {
  const path = `${OUT}${name}.png`;
  await page.screenshot({ path });
  console.log(`wrote ${path}`);
}

const stack = await startStack({ workers: 1 });
const chromium = await launchChromium();
try {
  mkdirSync(OUT, { recursive: true });
  const tab = await openPage(chromium.browser);
  const { page } = tab;
  await page.setViewport({ width: 1280, height: 1100 });
  await signIn(page, stack.url, ADMIN_KEY);
  await page.waitForFunction(() => document.querySelector('.live-status')?.textContent === 'Live');
  for (let s = 0; s < TRAFFIC_S; s++) {
    const started = Date.now();
    await second(stack.url, s);
    await sleep(Math.max(0, 1000 - (Date.now() - started)));
  }
  // Last, a refusal near the top of the list, held there by pausing, and opened.
  await call(stack.url, '/v1/events/batch', {
    body: {
      events: [
        event({ service: 'web-shop', type: 'order.paid' }),
        { service: 'web-shop', type: 'x'.repeat(200) },
      ],
    },
  });
  await sleep(1_200); // the last second's counts
  await page.click('.toolbar button');
  await page.click('.outcome-refused summary');
  await page.evaluate(() => window.scrollTo(0, 0));
  await shoot(page, 'console-live');
  await page.goto(`${stack.url}/#/pipeline`);
  await page.waitForSelector('table');
  await sleep(500);
  await shoot(page, 'console-pipeline');
  const problems = tab.problems();
  if (problems.length > 0) throw new Error(`the console reported problems:\n${problems.join('\n')}`);
} finally {
  await chromium.close();
  await stack.close();
}
