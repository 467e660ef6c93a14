import { randomUUID } from 'node:crypto';
import type { Page } from 'puppeteer-core';
import { describe, expect } from 'vitest';
import { consoleTest, PHONE, signIn, texts } from '../helpers/browser.ts';
import { ADMIN_KEY } from '../helpers/env.ts';
import { call, type Stack, waitFor } from '../helpers/stack.ts';
import { clickButton, createKey, sideScroll } from './api-calls.ts';

// The materializations page in a real Chromium against a real stack: Segment calls through a
// key bound to a service, one value that no longer fits its typed column, a materialisation
// built and kept up to date by the worker; the page shows its state, what it applied, rows per
// table and the conflict; a rebuild from the page (confirmed) reaches the API and the page
// follows it. A key without the admin scope is told which one the page needs.

const test = consoleTest({ workers: 1, env: { MATERIALIZE_POLL_MS: '100' } });

const SERVICE = 'web';
const row = (name: string) => `tr[data-materialization="${name}"]`;

/** Segment calls to `POST /v1/batch`, authenticated as analytics.js does (Basic, the key as user). */
async function sendBatch(stack: Stack, writeKey: string, batch: Record<string, unknown>[]): Promise<void> {
  const res = await call(stack.url, '/v1/batch', {
    key: null,
    headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` },
    body: { batch },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.body.rejected).toEqual([]);
}

const storedCount = async (stack: Stack) =>
  Number((await stack.env.pool.query<{ n: string }>('SELECT count(*) AS n FROM events')).rows[0]?.n);

// biome-ignore lint/suspicious/noExplicitAny: the API's body, checked field by field
type Body = any;

/** The materialisation once it is running with nothing pending (every stored event applied) and `ready` holds. */
async function caughtUp(stack: Stack, what: string, ready: (m: Body) => boolean = () => true): Promise<Body> {
  let last: Body;
  try {
    return await waitFor(
      async () => {
        const res = await call(stack.url, '/v1/admin/materializations/main');
        expect(res.status).toBe(200);
        last = res.body;
        const done =
          last.state === 'running' &&
          last.rebuildRequestedAt === null &&
          last.position !== null &&
          last.lag.pending === 0 &&
          ready(last);
        return done ? last : undefined;
      },
      30_000,
      what,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last state: ${JSON.stringify(last)}`);
  }
}

/**
 * Waits until the first element matching each selector has exactly its text (the page refreshes
 * every 5 s, so a row read before the last change shows it at the next refresh); on a timeout,
 * fails with what the page shows.
 */
async function expectCells(page: Page, want: Record<string, string>, timeout = 15_000): Promise<void> {
  try {
    await page.waitForFunction(
      (w: Record<string, string>) =>
        Object.entries(w).every(([sel, text]) => document.querySelector(sel)?.textContent?.trim() === text),
      { timeout },
      want,
    );
  } catch (err) {
    const seen: Record<string, string | undefined> = {};
    for (const sel of Object.keys(want)) seen[sel] = (await texts(page, sel))[0];
    expect(seen).toEqual(want);
    throw err;
  }
}

describe('materializations page', () => {
  test('shows a materialisation’s state, rows and conflicts; a rebuild from the page', async ({
    stack,
    tab,
  }) => {
    const { page } = tab;
    const key = await call(stack.url, '/v1/admin/keys', {
      body: { name: 'segment-web', scopes: ['ingest'], services: [SERVICE] },
    });
    expect(key.status).toBe(201);
    const writeKey: string = key.body.key;
    const messageId = () => `mat-browser-${randomUUID()}`;
    await sendBatch(stack, writeKey, [
      {
        type: 'track',
        event: 'Order Completed',
        messageId: messageId(),
        userId: 'u1',
        properties: { total: 12 },
      },
      { type: 'identify', messageId: messageId(), userId: 'u1', traits: { email: 'a@b.c', plan: 'pro' } },
      { type: 'page', name: 'Home', messageId: messageId(), anonymousId: 'a1', properties: { path: '/' } },
      {
        type: 'track',
        event: 'Signed Up',
        messageId: messageId(),
        userId: 'u2',
        properties: { plan: 'free' },
      },
    ]);
    await waitFor(async () => (await storedCount(stack)) === 4, 15_000, '4 events stored');

    // No materialisation yet: the page says how to create one.
    await signIn(page, stack.url, ADMIN_KEY, '#/materializations');
    await page.waitForSelector('[data-field=empty]');
    const empty = (await texts(page, '[data-field=empty]'))[0] ?? '';
    expect(empty).toContain('PUT /v1/admin/materializations/');
    expect(empty).toContain('"destination":{"kind":"postgres","schema":"mat"}');
    expect(await texts(page, 'nav a[aria-current=page]')).toEqual(['Materializations']);
    await tab.screenshot('materializations-empty');

    const put = await call(stack.url, '/v1/admin/materializations/main', {
      method: 'PUT',
      body: { destination: { kind: 'postgres', schema: 'mat' } },
    });
    expect(put.status, JSON.stringify(put.body)).toBe(201);
    await caughtUp(stack, 'first build', (m) => m.eventsApplied === 4);
    // A value the typed column (bigint, from 12) cannot hold: a conflict of order_completed.total.
    await sendBatch(stack, writeKey, [
      {
        type: 'track',
        event: 'Order Completed',
        messageId: messageId(),
        userId: 'u1',
        properties: { total: 'free' },
      },
    ]);
    await waitFor(async () => (await storedCount(stack)) === 5, 15_000, '5 events stored');
    // Rows per table are PostgreSQL's statistics, flushed by the writing backend within a second or so.
    const before = await caughtUp(
      stack,
      'the conflicting value applied',
      (m) =>
        m.eventsApplied === 5 &&
        m.columns.some((c: Body) => c.conflicts > 0) &&
        m.tables.tracks === 3 &&
        m.tables.identifies === 1 &&
        m.tables.users >= 1 &&
        m.tables.order_completed === 2,
    );
    const total = before.columns.find((c: Body) => c.table === 'order_completed' && c.column === 'total');
    expect(total).toMatchObject({ type: 'bigint', conflicts: 1 });

    await clickButton(page, 'Refresh');
    await page.waitForSelector(row('main'));
    const cell = (field: string) => `${row('main')} [data-field=${field}]`;
    const rows = (table: string) => `${row('main')} [data-table=${table}] dd`;
    await expectCells(page, {
      [`${row('main')} .badge`]: 'running',
      [cell('applied')]: '5',
      [cell('lag')]: 'caught up',
      [rows('tracks')]: '3',
      [rows('identifies')]: '1',
      [rows('users')]: String(before.tables.users),
      [cell('event-tables')]: '2 event tables (3 rows)',
      [cell('columns')]: `${before.columns.length} typed`,
      [cell('conflicts')]: '1 conflict',
    });
    expect((await texts(page, cell('state')))[0]).toContain(`on ${before.runningOn}`);
    expect((await texts(page, cell('destination')))[0]).toBe('postgres · schema mat');
    expect(await page.$(cell('error'))).toBeNull();
    // The conflicting column, its types and a sample event, behind a details element.
    await page.click(`${cell('conflicting-columns')} summary`);
    const conflict = (await texts(page, `${cell('conflicting-columns')} li`))[0] ?? '';
    expect(conflict).toContain('order_completed.total');
    expect(conflict).toContain(total.type === total.wanted ? total.type : `${total.type} → ${total.wanted}`);
    expect(conflict).toContain('1 value');
    expect(conflict).toContain(total.conflictSample);
    const rebuiltBefore = await page.$$eval(`${cell('last-rebuild')} time`, (t) =>
      t.map((e) => e.getAttribute('datetime')),
    );
    expect(rebuiltBefore).toEqual(before.lastRebuildAt ? [before.lastRebuildAt] : []);
    await tab.screenshot('materializations-list');

    // Rebuild: asked, confirmed, requested; the page follows it until it is done.
    await clickButton(page, 'Rebuild…', row('main'));
    await page.waitForSelector(`${row('main')} fieldset.confirm`);
    expect((await texts(page, `${row('main')} .confirm-question`))[0]).toContain('mat__rebuild');
    await tab.screenshot('materializations-confirm-rebuild');
    await page.click(`${row('main')} fieldset.confirm button.primary`);
    await page.waitForFunction(
      (sel) => document.querySelector(sel)?.textContent?.includes('Rebuild of main requested'),
      {},
      `${row('main')} [role=status]`,
    );
    const requested = (await page.$(cell('rebuild-requested'))) !== null;
    const after = await caughtUp(stack, 'rebuilt', (m) => m.lastRebuildAt !== before.lastRebuildAt);
    await page.waitForFunction(
      (sel, want) =>
        document.querySelector(`${sel} [data-field=last-rebuild] time`)?.getAttribute('datetime') === want &&
        document.querySelector(`${sel} [data-field=rebuild-requested]`) === null,
      { timeout: 15_000 },
      row('main'),
      after.lastRebuildAt,
    );
    // Rebuilt with the widest type seen, the value fits: no conflict left.
    const widened = after.columns.find((c: Body) => c.table === 'order_completed' && c.column === 'total');
    expect(widened).toMatchObject({ type: total.wanted, conflicts: 0 });
    await expectCells(page, {
      [cell('conflicts')]: '0 conflicts',
      [cell('applied')]: String(after.eventsApplied),
    });
    expect(await page.$(cell('conflicting-columns'))).toBeNull();
    // At a phone's width the table scrolls sideways in its own box; the page does not.
    await page.setViewport(PHONE);
    expect(await sideScroll(page)).toBeLessThanOrEqual(0);
    await tab.screenshot('materializations-phone');
    console.info(
      `[materializations page] rebuild ${requested ? 'shown as requested, then done' : 'done before the page read it back'}; total ${total.type} → ${widened.type}, conflicts ${total.conflicts} → ${widened.conflicts}`,
    );
  });

  test('a key without the admin scope is told which scope the page needs', async ({ stack, tab }) => {
    const { page } = tab;
    const { key } = await createKey(stack.url, 'read-only', ['read']);
    await signIn(page, stack.url, key, '#/materializations');
    await page.waitForFunction(() => document.querySelector('main h1')?.textContent === 'Materializations');
    const notice = (await texts(page, 'main .notice'))[0] ?? '';
    expect(notice).toContain('needs a key with the "admin" scope');
    expect(notice).toContain('this key has read');
    expect(await page.$(row('main'))).toBeNull();
  });
});
