import { describe, expect } from 'vitest';
import { consoleTest, openPage, PHONE, signIn, texts } from '../helpers/browser.ts';
import { call } from '../helpers/stack.ts';
import { auditedCalls, clickButton, createKey, sideScroll, waitForText } from './api-calls.ts';

// The keys page in a real Chromium against a real stack: a key created with services and a
// limit, shown once; signed in with in a second tab; rotated (the old key keeps working for the
// overlap); revoked after a confirmation (then 401, and the second tab is signed out). Every
// call in the audit log under the administrator's key.

const test = consoleTest();

const whoamiStatus = async (url: string, key: string) => (await call(url, '/v1/whoami', { key })).status;

describe('keys page', () => {
  test('create with services and a limit, sign in with it, rotate it, revoke it', async ({
    stack,
    tab,
    browser,
  }) => {
    const { page } = tab;
    const admin = await createKey(stack.url, 'key-admin', ['admin']);
    await signIn(page, stack.url, admin.key, '#/keys');
    await page.waitForSelector(`tr[data-key-id="${admin.id}"]`);
    expect((await texts(page, `tr[data-key-id="${admin.id}"] th`))[0]).toBe("key-admin (this console's key)");

    // A mistake is shown beside its field, and nothing is sent.
    await page.type('#key-name', 'shop-writer');
    await page.type('#key-services', 'web-shop, bad/name');
    await clickButton(page, 'Create key');
    await waitForText(page, '#scopes-problem', 'Choose at least one scope.');
    expect((await texts(page, '#key-services-problem'))[0]).toContain('bad/name');

    await page.click('input[name=scopes][value=ingest]');
    await page.click('input[name=scopes][value=read]');
    await page.click('#key-services', { count: 3 });
    await page.type('#key-services', 'web-shop, billing');
    await page.type('#key-rate', '600');
    await clickButton(page, 'Create key');

    // Shown once, with the warning, and focused so it is read first (services as the API sorted them).
    await page.waitForSelector('[data-testid=one-time-key]');
    const key = await page.$eval('#new-key', (e) => (e as HTMLInputElement).value);
    expect(key.length).toBeGreaterThan(20);
    const panel = (await texts(page, '[data-testid=one-time-key]'))[0] ?? '';
    expect(panel).toContain('you will not see it again');
    expect(panel).toContain(
      'Scopes ingest, read; services billing, web-shop; at most 600 events per minute.',
    );
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('new-key-heading');
    await page
      .browserContext()
      .overridePermissions(stack.url, ['clipboard-read', 'clipboard-sanitized-write']);
    await clickButton(page, 'Copy');
    await waitForText(page, '[data-testid=one-time-key] [role=status]', 'Copied to the clipboard.');
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(key);
    await tab.screenshot('keys-created');
    const listed = await call(stack.url, '/v1/admin/keys');
    const created = (listed.body.keys as { id: string; name: string }[]).find(
      (k) => k.name === 'shop-writer',
    );
    expect(created).toBeDefined();
    const id = created?.id ?? '';
    const row = `tr[data-key-id="${id}"]`;
    await page.waitForSelector(row);
    const cells = await texts(page, `${row} td`);
    expect(cells.slice(1, 4)).toEqual(['ingest, read', 'billing, web-shop', '600']);
    // Never kept: not in storage, not in any address.
    expect(JSON.stringify(await page.evaluate(() => ({ ...sessionStorage, ...localStorage })))).not.toContain(
      key,
    );
    await clickButton(page, 'Done: I have copied it');
    expect(await page.$('#new-key')).toBeNull();

    // A second tab signs in with the new key and sees its scopes.
    const second = await openPage(browser);
    second.expectProblem(/status of 401/);
    await signIn(second.page, stack.url, key, '#/keys');
    expect(await texts(second.page, '.who-name')).toEqual(['shop-writer']);
    expect(await texts(second.page, '.who-scopes')).toEqual(['ingest · read']);
    await second.page.waitForFunction(() =>
      document.querySelector('main .notice')?.textContent?.includes('"admin"'),
    );

    // Rotate: confirmed, the new key shown once, the old one working for the overlap.
    await clickButton(page, 'Rotate…', row);
    await page.waitForFunction(() => document.activeElement?.textContent === 'Rotate');
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-testid=old-key-fate]');
    expect((await texts(page, '#new-key-heading'))[0]).toBe('Key rotated: shop-writer (rotated)');
    expect((await texts(page, '[data-testid=old-key-fate]'))[0]).toMatch(
      /^The old key keeps working for 24 h more, until .+, then gets 401\.$/,
    );
    const rotated = await page.$eval('#new-key', (e) => (e as HTMLInputElement).value);
    expect(rotated).not.toBe(key);
    expect(await whoamiStatus(stack.url, rotated)).toBe(200);
    expect(await whoamiStatus(stack.url, key)).toBe(200);
    await waitForText(page, `${row} td .badge`, 'rotated');

    // Revoke the old key: Escape backs out of the confirmation, then it is confirmed.
    await clickButton(page, 'Revoke…', row);
    await page.waitForFunction(() => document.activeElement?.textContent === 'Revoke');
    expect((await texts(page, `${row} fieldset.confirm`))[0]).toContain('gets 401 at once');
    await tab.screenshot('keys-revoke-confirm');
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => document.activeElement?.textContent?.startsWith('Revoke…'));
    await clickButton(page, 'Revoke…', row);
    await page.waitForFunction(() => document.activeElement?.textContent === 'Revoke');
    await page.keyboard.press('Enter');
    await page.waitForFunction((sel) => document.querySelector(sel) === null, {}, row);
    expect(await whoamiStatus(stack.url, key)).toBe(401);
    expect(await whoamiStatus(stack.url, rotated)).toBe(200);
    // Listed again with the revoked ones shown.
    await page.click('::-p-xpath(.//label[contains(., "Show revoked")]/input)');
    await waitForText(page, `${row} td .badge`, 'revoked');

    // The second tab's next call is refused: it is signed out, and says why.
    await second.page.reload();
    await second.page.waitForSelector('#api-key');
    expect((await texts(second.page, '[role=alert]'))[0]).toContain('unauthorized');
    expect(second.problems()).toEqual([]);
    await second.page.browserContext().close();

    await page.setViewport(PHONE);
    expect(await sideScroll(page)).toBeLessThanOrEqual(0);
    await tab.screenshot('keys-phone');

    const calls = await auditedCalls(stack.url, admin.id);
    const changes = calls.filter((c) => c.method !== 'GET');
    expect(changes).toEqual([
      { action: 'keys.create', method: 'POST', status: 201, target: null, outcome: 'ok' },
      { action: 'keys.rotate', method: 'POST', status: 201, target: id, outcome: 'ok' },
      { action: 'keys.delete', method: 'DELETE', status: 204, target: id, outcome: 'ok' },
    ]);
    expect(calls.filter((c) => c.method === 'GET').every((c) => c.action === 'keys.list')).toBe(true);
  });
});
