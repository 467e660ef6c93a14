import type { Page } from 'puppeteer-core';
import { expect } from 'vitest';
import { ADMIN_KEY } from '../helpers/env.ts';
import { call } from '../helpers/stack.ts';

// What the page tests arrange and check through the API (with the bootstrap key), beside what
// they do in the browser: the key a test signs in with, and the audit rows its clicks left.

/** A stored key with these scopes, so the audit log names it rather than the bootstrap key. */
export async function createKey(
  url: string,
  name: string,
  scopes: string[],
): Promise<{ id: string; key: string }> {
  const res = await call(url, '/v1/admin/keys', { body: { name, scopes } });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return { id: res.body.id, key: res.body.key };
}

export interface AuditRow {
  action: string;
  method: string;
  status: number;
  target: string | null;
  outcome: string;
}

/** The audit log's rows for one key (`GET /v1/admin/audit?keyId=`), oldest first. */
export async function auditedCalls(url: string, keyId: string): Promise<AuditRow[]> {
  const res = await call(url, `/v1/admin/audit?keyId=${encodeURIComponent(keyId)}&limit=1000`, {
    key: ADMIN_KEY,
  });
  expect(res.status).toBe(200);
  return (res.body.entries as AuditRow[])
    .map(({ action, method, status, target, outcome }) => ({ action, method, status, target, outcome }))
    .reverse();
}

/** How far the page scrolls sideways (0 or less: it fits its width). */
export const sideScroll = (page: Page): Promise<number> =>
  page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);

/** Clicks the button whose text contains `text` (inside `within`, a CSS selector, when given). */
export async function clickButton(page: Page, text: string, within = ''): Promise<void> {
  const scope = within ? `${within} ` : '';
  const handle = await page.waitForSelector(`${scope}::-p-xpath(.//button[contains(., "${text}")])`);
  await handle?.click();
}

/** Waits until the first element matching `selector` has exactly this text. */
export async function waitForText(
  page: Page,
  selector: string,
  text: string,
  timeout = 30_000,
): Promise<void> {
  await page.waitForFunction(
    (sel, want) => document.querySelector(sel)?.textContent?.trim() === want,
    { timeout },
    selector,
    text,
  );
}
