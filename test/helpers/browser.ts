import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { expect } from 'vitest';
import { stackTest } from './fixtures.ts';
import type { StackOptions } from './stack.ts';

// The browser tests drive Debian's Chromium (nothing downloaded: puppeteer-core ships no
// browser) against a real stack. Every page fails its test on a console error, an uncaught
// exception or a Content-Security-Policy violation, unless the test said it expects it.

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ARTIFACTS = fileURLToPath(new URL('../browser/artifacts/', import.meta.url));

export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };

/** A fresh profile every time: no cache, no stored state between files. */
export async function launchChromium(): Promise<{ browser: Browser; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'tributary-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: [
      '--no-sandbox',
      '--headless',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    browser,
    async close() {
      await browser.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export interface ConsolePage {
  page: Page;
  /** Console errors, page errors and CSP violations seen, except the ones a test expects. */
  problems(): string[];
  /** Every one seen, the expected ones included. */
  seen(): string[];
  /** A console error the test provokes on purpose (a 401 from a wrong key). */
  expectProblem(pattern: RegExp): void;
  /** Saves a full-page screenshot under test/browser/artifacts/; returns its path. */
  screenshot(name: string): Promise<string>;
}

/** Runs in the page before any of its scripts (as source: it is page code, not Node's). */
const REPORT_CSP_VIOLATIONS = `document.addEventListener('securitypolicyviolation', (e) => {
  window.__reportCspViolation(e.effectiveDirective + ' blocked ' + (e.blockedURI || '(inline)') + ' at ' + e.sourceFile + ':' + e.lineNumber);
});`;

/** A new tab watching for errors; the CSP listener is in place before any script of the page runs. */
export async function openPage(browser: Browser, viewport = DESKTOP): Promise<ConsolePage> {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport(viewport);
  const seen: string[] = [];
  const expected: RegExp[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') seen.push(`console: ${m.text()} (${m.location().url ?? 'no url'})`);
  });
  page.on('pageerror', (e) => seen.push(`page error: ${e instanceof Error ? e.message : String(e)}`));
  await page.exposeFunction('__reportCspViolation', (text: string) => seen.push(`CSP: ${text}`));
  await page.evaluateOnNewDocument(REPORT_CSP_VIOLATIONS);
  return {
    page,
    problems: () => seen.filter((p) => !expected.some((re) => re.test(p))),
    seen: () => [...seen],
    expectProblem: (pattern) => expected.push(pattern),
    async screenshot(name) {
      mkdirSync(ARTIFACTS, { recursive: true });
      const path = join(ARTIFACTS, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
  };
}

/** Opens the console and signs in with `key` (typed into the password field). */
export async function signIn(page: Page, url: string, key: string, hash = ''): Promise<void> {
  await page.goto(`${url}/${hash}`);
  await page.waitForSelector('#api-key');
  await page.type('#api-key', key);
  await page.keyboard.press('Enter');
  await page.waitForSelector('nav[aria-label="Console"]');
}

/** The text of every element matching `selector`, in document order. */
export function texts(page: Page, selector: string): Promise<string[]> {
  return page.$$eval(selector, (els) => els.map((e) => (e.textContent ?? '').trim()));
}

/**
 * Browser tests over one stack (`stack`) and one Chromium (`browser`) per file; each test gets
 * its own tab in its own browser context (`tab`, 1280 px, signed out), so no session leaks
 * between tests. When a test ends its tab is saved as `<file>-<test>.png` and must have seen
 * no unexpected console error, page error or CSP violation.
 */
export function consoleTest(options: StackOptions = { workers: 1 }) {
  const extended = stackTest(options)
    // biome-ignore lint/correctness/noEmptyPattern: vitest's fixture syntax (test/helpers/fixtures.ts)
    .extend('browser', { scope: 'file' }, async ({}, { onCleanup }) => {
      const chromium = await launchChromium();
      onCleanup(() => chromium.close());
      return chromium.browser;
    })
    .extend('tab', async ({ browser, task }, { onCleanup }) => {
      const tab = await openPage(browser);
      onCleanup(async () => {
        const file = (task.file.name.split('/').pop() ?? 'test').replace(/\.test\.ts$/, '');
        const name = `${file}-${task.name}`
          .replace(/[^A-Za-z0-9]+/g, '-')
          .toLowerCase()
          .slice(0, 100);
        await tab.screenshot(name).catch(() => {});
        const problems = tab.problems();
        await tab.page.browserContext().close();
        expect(problems, 'console errors, page errors or CSP violations').toEqual([]);
      });
      return tab;
    });
  extended.beforeAll(async ({ browser: _launched }) => {});
  return extended;
}
