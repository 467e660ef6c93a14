import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect } from 'vitest';
import { consoleTest, PHONE, signIn, texts } from '../helpers/browser.ts';
import { call, event } from '../helpers/stack.ts';
import { waitUntilStored } from '../helpers/stored-once.ts';
import { auditedCalls, clickButton, createKey, sideScroll, waitForText } from './api-calls.ts';

// The retention page in a real Chromium against a real stack (serve + one worker): "run now",
// the pass followed until it completes with its outcome and steps, and the archive it wrote in
// the table; the calls in the audit log under the signed-in key. Cheap to arrange: the service
// `brief` keeps one day, so events a few days old (still accepted: the default keeps 30) pass
// it, and the archive goes to a directory.

const DAY_MS = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'tributary-console-archive-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const test = consoleTest({
  workers: 1,
  settings: {
    RETENTION_DAYS: '30',
    RETENTION_BY_SERVICE: 'brief=1',
    RETENTION_SCHEDULE: 'off',
    ARCHIVE_DIR: join(dir, 'objects'),
    ARCHIVE_WORK_DIR: join(dir, 'work'),
  },
});

describe('retention page', () => {
  test('runs a pass now, follows it to its outcome, and lists the archive it wrote', async ({
    stack,
    tab,
  }) => {
    const { page } = tab;
    const old = new Date(Date.now() - 3 * DAY_MS).toISOString();
    const events = [
      ...Array.from({ length: 7 }, () => event({ service: 'brief', timestamp: old })),
      ...Array.from({ length: 3 }, () => event({ service: 'kept', timestamp: old })),
    ];
    const sent = await call(stack.url, '/v1/events/batch', { body: { events } });
    expect(sent.body.accepted).toBe(10);
    await waitUntilStored(stack.env.pool, sent.body.ids);
    const operator = await createKey(stack.url, 'retention-operator', ['admin']);

    await signIn(page, stack.url, operator.key, '#/retention');
    await waitForText(page, 'section[aria-labelledby=runs-heading] .empty', 'No retention pass has run yet.');
    await waitForText(page, 'section[aria-labelledby=archives-heading] .empty', 'No archive yet.');
    await clickButton(page, 'Run a pass now');

    // The pass is shown (its id in the address) and followed until it completes.
    await page.waitForFunction(
      () => document.querySelector('[data-testid=run-detail] h2 .badge')?.textContent === 'completed',
      { timeout: 30_000 },
    );
    const runId = await page.evaluate(() =>
      new URLSearchParams(window.location.hash.split('?')[1]).get('run'),
    );
    expect(runId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await texts(page, '[data-testid=run-archived]'))[0]).toMatch(/^7 rows, \d/);
    const steps = await texts(page, '[data-testid=run-detail] .steps code');
    expect(steps).toContain('archive.verified');
    expect(steps).toContain('rows.deleted');
    const row = await page.waitForSelector(`tr[data-run-id="${runId}"]`);
    expect(await row?.evaluate((r) => r.getAttribute('aria-current'))).toBe('true');
    expect(await row?.evaluate((r) => r.textContent)).toContain('completed');
    await page.waitForFunction(
      () => !document.querySelector('main button.primary')?.hasAttribute('disabled'),
    );

    // The archive the pass wrote, once it ended.
    await page.waitForSelector('table.archives tbody tr');
    const archives = await page.$$eval('table.archives tbody tr', (rows) =>
      rows.map((r) => [...r.querySelectorAll('th, td')].map((c) => c.textContent?.trim() ?? '')),
    );
    expect(archives).toHaveLength(1);
    const [month, service, status, rows, bytes, sha256, objectKey] = archives[0] ?? [];
    expect({ month, service, status, rows }).toEqual({
      month: old.slice(0, 7),
      service: 'brief',
      status: 'complete',
      rows: '7',
    });
    expect(bytes).toMatch(/^\d+(\.\d)? (B|KiB)$/);
    expect(sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(objectKey).toContain('service=brief');
    expect((await texts(page, 'section[aria-labelledby=archives-heading] p.hint'))[0]).toContain(
      join(dir, 'objects'),
    );
    const left = await stack.env.pool.query<{ service: string }>('SELECT service FROM events');
    expect(left.rows.map((r) => r.service)).toEqual(['kept', 'kept', 'kept']);

    await tab.screenshot('retention-desktop');

    // Filtering by a service that has none empties the table.
    await page.type('.archive-filters input[name=service]', 'kept');
    await clickButton(page, 'Apply filters');
    await waitForText(
      page,
      'section[aria-labelledby=archives-heading] .empty',
      'No archive matches these filters.',
    );

    // A reload shows the same pass, from the address.
    await page.reload();
    await page.waitForFunction(
      () => document.querySelector('[data-testid=run-detail] h2 .badge')?.textContent === 'completed',
    );
    await page.setViewport(PHONE);
    expect(await sideScroll(page)).toBeLessThanOrEqual(0);
    await tab.screenshot('retention-phone');

    const calls = await auditedCalls(stack.url, operator.id);
    expect(calls.find((c) => c.action === 'retention.run')).toEqual({
      action: 'retention.run',
      method: 'POST',
      status: 202,
      target: null,
      outcome: 'ok',
    });
    expect(calls.filter((c) => c.action === 'retention.runs.get').every((c) => c.target === runId)).toBe(
      true,
    );
    expect(new Set(calls.map((c) => c.action))).toEqual(
      new Set(['retention.runs.list', 'retention.run', 'retention.runs.get', 'archives.list']),
    );
    expect(calls.every((c) => c.outcome === 'ok')).toBe(true);
  });
});
