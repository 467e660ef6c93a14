import type { Page } from 'puppeteer-core';
import { describe, expect } from 'vitest';
import { consoleTest, PHONE, signIn, texts } from '../helpers/browser.ts';
import { ADMIN_KEY } from '../helpers/env.ts';
import { call, event } from '../helpers/stack.ts';

// The live page in a real Chromium against a real stack: events sent over HTTP appear as
// they are ingested, refusals with their code and failing paths, filters, pause, the JSON of
// an outcome, and the throughput chart drawn from the server's per-second stats.

const test = consoleTest();

/** Signed in on the live page, its stream open. */
async function openLivePage(page: Page, url: string, hash = ''): Promise<void> {
  await signIn(page, url, ADMIN_KEY, hash);
  await page.waitForFunction(() => document.querySelector('.live-status')?.textContent === 'Live');
}

/** The listed outcomes, newest first, as `outcome service type code`. */
const rows = (page: Page) =>
  page.$$eval('.outcome summary', (els) =>
    els.map((el) =>
      [
        el.querySelector('.badge')?.textContent,
        el.querySelector('.service')?.textContent,
        el.querySelector('.type')?.textContent,
        el.querySelector('.outcome-code')?.textContent,
      ]
        .filter(Boolean)
        .join(' '),
    ),
  );

const waitForRows = (page: Page, n: number, timeout = 5_000) =>
  page.waitForFunction((count) => document.querySelectorAll('.outcome').length >= count, { timeout }, n);

describe('live view', () => {
  test('lists events sent over HTTP within a second, a refusal with its code and failing path, and an outcome’s JSON', async ({
    stack,
    tab,
  }) => {
    const { page } = tab;
    await openLivePage(page, stack.url);

    const first = event({ service: 'web-shop', type: 'order.paid', metadata: { total: 19.9 } });
    expect((await call(stack.url, '/v1/events', { body: first })).status).toBe(202);
    // Within a second of the 202: the outcome is published as it is decided.
    await waitForRows(page, 1, 1_000);
    expect(await rows(page)).toEqual(['accepted web-shop order.paid']);

    const bad = { service: 'web-shop', type: 'order.refunded', timestamp: 'yesterday' };
    const batch = await call(stack.url, '/v1/events/batch', {
      body: { events: [event({ service: 'billing', type: 'invoice.sent' }), bad] },
    });
    expect(batch.body).toMatchObject({ accepted: 1, rejected: [{ index: 1 }] });
    await waitForRows(page, 3, 1_000);
    expect(await rows(page)).toEqual([
      'refused web-shop order.refunded invalid_event',
      'accepted billing invoice.sent',
      'accepted web-shop order.paid',
    ]);
    // The refusal's failing path is on its row, without opening it.
    const refusal = (await texts(page, '.outcome-refused .failing-path'))[0];
    expect(refusal).toMatch(/^timestamp /);

    // Opening an outcome shows its JSON: the event as stored for an accepted one.
    const oldest = (await page.$$('.outcome summary')).at(-1);
    await oldest?.click();
    const json = await page.$eval('.outcome:last-child details[open] pre', (e) => e.textContent ?? '');
    expect(JSON.parse(json)).toMatchObject({
      outcome: 'accepted',
      id: first.id,
      event: { id: first.id, service: 'web-shop', type: 'order.paid', metadata: { total: 19.9 } },
    });
    // The refused one shows what was sent, and every detail.
    await page.click('.outcome-refused summary');
    const refusedJson = JSON.parse(
      await page.$eval('.outcome-refused details[open] pre', (e) => e.textContent ?? ''),
    );
    expect(refusedJson).toMatchObject({
      code: 'invalid_event',
      input: bad,
      details: [{ path: 'timestamp' }],
    });
    await tab.screenshot('live-view');
  });

  test('filters by outcome and service on the server, and pausing holds new outcomes until resumed', async ({
    stack,
    tab,
  }) => {
    const { page } = tab;
    await openLivePage(page, stack.url);
    await page.click('input[name=outcome][value=refused]');
    await page.type('input[name=service]', 'filter-a');
    await page.click('xpath/.//button[contains(., "Apply filters")]');
    await page.waitForFunction(() => window.location.hash === '#/live?service=filter-a&outcome=refused');
    await page.waitForFunction(() => document.querySelector('.live-status')?.textContent === 'Live');

    await call(stack.url, '/v1/events/batch', {
      body: {
        events: [
          event({ service: 'filter-a', type: 'kept.out' }),
          { service: 'filter-a', type: 'shown', timestamp: 'never' },
          { service: 'filter-b', type: 'other.service', timestamp: 'never' },
        ],
      },
    });
    await waitForRows(page, 1);
    expect(await rows(page)).toEqual(['refused filter-a shown invalid_event']);

    await page.click('xpath/.//button[contains(., "Pause")]');
    await call(stack.url, '/v1/events/batch', {
      body: { events: [{ service: 'filter-a', type: 'while.paused', timestamp: 'never' }] },
    });
    await page.waitForFunction(
      () => document.querySelector('button.paused')?.textContent === 'Resume (1 new)',
    );
    expect(await page.$$('.outcome')).toHaveLength(1);
    await page.click('button.paused');
    await waitForRows(page, 2);
    expect(await rows(page)).toEqual([
      'refused filter-a while.paused invalid_event',
      'refused filter-a shown invalid_event',
    ]);
  });

  test('the throughput chart draws accepted and refused per second', async ({ stack, tab }) => {
    const { page } = tab;
    await openLivePage(page, stack.url);
    // Three seconds of traffic, so several stats frames carry counts.
    for (let second = 0; second < 3; second++) {
      await call(stack.url, '/v1/events/batch', {
        body: {
          events: [
            ...Array.from({ length: 20 }, () => event({ service: 'chart', type: 'tick' })),
            ...Array.from({ length: 8 }, () => ({ service: 'chart', type: 'bad', timestamp: 'never' })),
          ],
        },
      });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    await page.waitForFunction(() => /Last second: \d+ accepted/.test(document.body.textContent ?? ''));

    // Each series is drawn at its height: 20 accepted a second above 8 refused above zero.
    // Colours are told apart by their dominant channel (line edges are blended with the
    // background, so exact values would miss them).
    const lines = await page.evaluate(() => {
      const canvas = document.querySelector<HTMLCanvasElement>('.chart canvas');
      const ctx = canvas?.getContext('2d');
      if (!canvas || !ctx) return null;
      const { data, width, height } = ctx.getImageData(0, 0, canvas.width, canvas.height);
      /** The highest row holding the colour, as a share of the canvas height (0 top, 1 bottom). */
      const top = (dominant: (r: number, g: number, b: number) => boolean) => {
        for (let y = 0; y < height; y++) {
          for (let x = 0; x < width; x++) {
            const i = (y * width + x) * 4;
            if ((data[i + 3] ?? 0) > 100 && dominant(data[i] ?? 0, data[i + 1] ?? 0, data[i + 2] ?? 0)) {
              return y / height;
            }
          }
        }
        return null;
      };
      return {
        accepted: top((r, g, b) => g - r > 40 && g - b > 40),
        refused: top((r, g, b) => r - g > 60 && r - b > 60),
      };
    });
    expect(lines?.accepted).not.toBeNull();
    expect(lines?.refused).not.toBeNull();
    expect((lines?.refused ?? 0) - (lines?.accepted ?? 1)).toBeGreaterThan(0.2);
    expect(lines?.refused).toBeLessThan(0.75);
    await tab.screenshot('live-view-chart');
  });

  test('at a phone’s width, outcomes and an opened one’s JSON fit without scrolling sideways', async ({
    stack,
    tab,
  }) => {
    const { page } = tab;
    // Before the page loads: a change of mobile emulation reloads the page.
    await page.setViewport(PHONE);
    await openLivePage(page, stack.url);
    const long = 'x'.repeat(300);
    await call(stack.url, '/v1/events/batch', {
      body: {
        events: [
          event({ service: 'phone', type: `a.long.type.${'y'.repeat(100)}`, metadata: { note: long } }),
          { service: 'phone', type: 'bad', timestamp: long },
        ],
      },
    });
    await waitForRows(page, 2);
    // Both opened (a tap on each is the first test's click).
    await page.$$eval('.outcome details', (all) => {
      for (const d of all) (d as HTMLDetailsElement).open = true;
    });
    expect(await page.$$('.outcome details[open]')).toHaveLength(2);
    await page.waitForFunction(() => /Last second: [1-9]/.test(document.body.textContent ?? ''));
    expect(
      await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth),
    ).toBeLessThanOrEqual(0);
    await tab.screenshot('phone-live-view');
  });
});
