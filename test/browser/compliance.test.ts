import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'puppeteer-core';
import { afterAll, describe, expect } from 'vitest';
import { consoleTest, PHONE, signIn, texts } from '../helpers/browser.ts';
import { call, event, type Stack, waitFor } from '../helpers/stack.ts';
import { waitUntilStored } from '../helpers/stored-once.ts';
import { auditedCalls, clickButton, createKey, sideScroll } from './api-calls.ts';

// The compliance page in a real Chromium against a real stack (serve + one worker), signed in
// with a key that has only the dsar scope: opt-out (then ingest skips the subject), export
// downloaded as a file, erasure confirmed from the keyboard and followed to `completed` with its
// counts, still followed after a reload; every call in the audit log under that key.

const test = consoleTest();
const downloads = mkdtempSync(join(tmpdir(), 'tributary-console-downloads-'));
afterAll(() => rmSync(downloads, { recursive: true, force: true }));

/** A subject id that needs encoding in a path (a slash, a space, a non-ASCII letter). */
const SUBJECT = 'console/subject é 1';

async function ingest(stack: Stack, n: number): Promise<{ ids: string[]; skipped: number }> {
  const events = Array.from({ length: n }, (_, i) => event({ userId: SUBJECT, message: `m${i}` }));
  const res = await call(stack.url, '/v1/events/batch', { body: { events } });
  expect(res.status).toBe(202);
  return { ids: res.body.ids, skipped: res.body.skipped };
}

/** Downloads go to `downloads`, as a user's browser would save them. */
async function allowDownloads(page: Page): Promise<void> {
  const session = await page.browser().target().createCDPSession();
  await session.send('Browser.setDownloadBehavior', {
    behavior: 'allow',
    downloadPath: downloads,
    browserContextId: page.browserContext().id,
  });
}

const notice = (page: Page, section: string) =>
  page.$eval(`section[aria-labelledby=${section}] [role=status] .notice`, (e) => e.textContent ?? '');

describe('compliance page', () => {
  test('opt-out, export, erasure followed to completed with its counts; each call audited as the signed-in key', async ({
    stack,
    tab,
  }) => {
    const { page } = tab;
    const stored = await ingest(stack, 5);
    await waitUntilStored(stack.env.pool, stored.ids);
    const officer = await createKey(stack.url, 'privacy-officer', ['dsar']);
    await allowDownloads(page);
    await signIn(page, stack.url, officer.key, '#/compliance');
    await page.waitForSelector('#subject');
    expect((await texts(page, 'main h1'))[0]).toBe('Compliance');

    // Nothing typed: the field says so, and nothing is sent.
    await clickButton(page, 'Opt out');
    await page.waitForFunction(() => document.querySelector('#subject-problem')?.textContent !== '');
    expect(await page.$eval('#subject', (e) => e.getAttribute('aria-invalid'))).toBe('true');

    await page.type('#subject', SUBJECT);
    await clickButton(page, 'Opt out');
    await page.waitForSelector('section[aria-labelledby=optout-heading] [role=status] .notice');
    expect(await notice(page, 'optout-heading')).toContain(`${SUBJECT} is opted out since`);
    expect((await ingest(stack, 1)).skipped).toBe(1);
    await clickButton(page, 'Opt back in');
    await page.waitForFunction(() =>
      document
        .querySelector('section[aria-labelledby=optout-heading] [role=status]')
        ?.textContent?.includes('opted back in'),
    );
    const back = await ingest(stack, 1);
    expect(back.skipped).toBe(0);
    await waitUntilStored(stack.env.pool, back.ids);

    // Export: saved as a file, one stored event per line.
    await clickButton(page, 'Download export');
    await page.waitForSelector('section[aria-labelledby=export-heading] [role=status] .notice');
    expect(await notice(page, 'export-heading')).toMatch(
      /^Saved tributary-export-console_subject_1-\d{8}T\d{6}Z\.ndjson: 6 events/,
    );
    const file = await waitFor(
      async () => readdirSync(downloads).find((f) => f.endsWith('.ndjson')),
      10_000,
      'the export file saved',
    );
    const lines = readFileSync(join(downloads, file), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(6);
    expect(new Set(lines.map((l) => l.userId))).toEqual(new Set([SUBJECT]));
    expect(new Set(lines.map((l) => l.id))).toEqual(new Set([...stored.ids, ...back.ids]));

    // Erasure from the keyboard: the confirmation takes the focus, Enter confirms.
    await page.focus('::-p-xpath(.//button[contains(., "Request erasure")])');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.activeElement?.textContent === 'Erase');
    expect(await texts(page, 'fieldset.confirm strong')).toEqual([SUBJECT]);
    await tab.screenshot('compliance-erasure-confirm');
    await page.keyboard.press('Enter');
    await page.waitForSelector('li.request');
    const requestId = await page.$eval('li.request', (e) => e.getAttribute('data-request-id') ?? '');
    await page.waitForFunction(
      () => document.querySelector('li.request .badge')?.textContent === 'completed',
      { timeout: 30_000 },
    );
    const counts = () =>
      page.$$eval('li.request dd[data-place]', (dds) =>
        Object.fromEntries(dds.map((d) => [d.getAttribute('data-place'), d.textContent])),
      );
    const expected = {
      database: '6',
      buffer: '0',
      checkpoint: '0',
      deadLetter: '0',
      archive: '0',
      archivesRewritten: '0',
    };
    expect(await counts()).toEqual(expected);
    expect((await texts(page, 'li.request p.hint'))[0]).toContain(`Subject ${SUBJECT}`);
    const { rows } = await stack.env.pool.query('SELECT 1 FROM events WHERE user_id = $1', [SUBJECT]);
    expect(rows).toEqual([]);

    // A reload forgets the subject but still shows the request (its id is in session storage).
    await page.reload();
    await page.waitForFunction(
      () => document.querySelector('li.request .badge')?.textContent === 'completed',
    );
    expect(await page.$eval('li.request', (e) => e.getAttribute('data-request-id'))).toBe(requestId);
    expect(await counts()).toEqual(expected);
    expect(await page.$eval('#subject', (e) => (e as HTMLInputElement).value)).toBe('');
    expect(JSON.stringify(await page.evaluate(() => ({ ...sessionStorage })))).not.toContain('subject é');

    // At a phone's width the page fits.
    await page.setViewport(PHONE);
    expect(await sideScroll(page)).toBeLessThanOrEqual(0);
    await tab.screenshot('compliance-phone');

    const calls = await auditedCalls(stack.url, officer.id);
    const target = SUBJECT;
    expect(calls.filter((c) => c.action !== 'dsar.get')).toEqual([
      { action: 'users.opt-out.set', method: 'PUT', status: 200, target, outcome: 'ok' },
      { action: 'users.opt-out.delete', method: 'DELETE', status: 200, target, outcome: 'ok' },
      { action: 'users.events.export', method: 'GET', status: 200, target, outcome: 'ok' },
      { action: 'users.events.delete', method: 'DELETE', status: 202, target, outcome: 'ok' },
    ]);
    const looks = calls.filter((c) => c.action === 'dsar.get');
    expect(looks.length).toBeGreaterThanOrEqual(2);
    for (const l of looks) expect(l).toMatchObject({ target: requestId, status: 200 });
  });
});
