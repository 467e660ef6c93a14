import { afterAll, beforeAll, describe, expect } from 'vitest';
import { signatureOf } from '../../src/sources/webhook.ts';
import { consoleTest, signIn, texts } from '../helpers/browser.ts';
import { ADMIN_KEY } from '../helpers/env.ts';
import {
  createSourceCall,
  createSourceDatabase,
  SOURCE_KEYS,
  type SourceDatabase,
  storedOf,
} from '../helpers/sources.ts';
import { call, waitFor } from '../helpers/stack.ts';
import { clickButton } from './api-calls.ts';

// The sources page in a real Chromium against a real stack: a table source reading, a webhook,
// and a source whose table was dropped (its runs fail: the page shows the error); pause and
// resume from the page reach the API, and the page shows the new state. No secret on the page.

const test = consoleTest({ workers: 1, env: { ...SOURCE_KEYS, SOURCE_POLL_MS: '100' } });

let db: SourceDatabase;
beforeAll(async () => {
  db = await createSourceDatabase();
  await db.pool.query(
    `CREATE TABLE signups (id bigint PRIMARY KEY, at timestamptz NOT NULL, plan text NOT NULL)`,
  );
  await db.pool.query(
    `INSERT INTO signups SELECT g, now() - interval '1 hour', 'free' FROM generate_series(1, 120) g`,
  );
  await db.pool.query(`CREATE TABLE doomed (id bigint PRIMARY KEY, at timestamptz NOT NULL)`);
});
afterAll(async () => {
  await db?.drop();
});

const tableSource = (name: string, table: string) => ({
  kind: 'postgres',
  name,
  service: 'accounts',
  connection: db.url,
  table,
  cursorColumn: 'at',
  idColumn: 'id',
  type: 'signup',
  intervalSeconds: 1,
});

describe('sources page', () => {
  test('lists sources with their state and last error; pause and resume from the page', async ({
    stack,
    tab,
  }) => {
    const { page } = tab;
    const signups = await createSourceCall(stack, tableSource('signups', 'signups'));
    const doomed = await createSourceCall(stack, tableSource('doomed', 'doomed'));
    const hook = await createSourceCall(stack, {
      kind: 'webhook',
      name: 'billing-hook',
      service: 'billing',
      secret: 'browser-hook-secret-0123',
      signatureHeader: 'X-Signature',
      idField: 'id',
      type: 'invoice.paid',
    });
    expect([signups.status, doomed.status, hook.status]).toEqual([201, 201, 201]);
    const delivery = JSON.stringify({ id: 'inv-1' });
    const delivered = await call(stack.url, `/v1/webhooks/${hook.body.id}`, {
      method: 'POST',
      raw: delivery,
      key: null,
      headers: { 'X-Signature': signatureOf('browser-hook-secret-0123', delivery) },
    });
    expect(delivered.status).toBe(202);
    await waitFor(async () => (await storedOf(stack, signups.body.id)).rows === 120);
    await db.pool.query('DROP TABLE doomed');
    await waitFor(async () => {
      const s = await call(stack.url, `/v1/admin/sources/${doomed.body.id}`, { key: ADMIN_KEY });
      return s.body.state.failures > 0;
    });

    await signIn(page, stack.url, ADMIN_KEY, '#/sources');
    const row = (name: string) => `tr[data-source="${name}"]`;
    await page.waitForSelector(row('signups'));
    const names = await texts(page, 'table.sources tbody th');
    expect(
      names.map(
        (n) =>
          n
            .split('\n')[0]
            ?.trim()
            .split(/PostgreSQL|Webhook/)[0],
      ),
    ).toEqual(['signups', 'doomed', 'billing-hook']);
    expect((await texts(page, `${row('signups')} [data-field=read]`))[0]).toBe('120');
    expect((await texts(page, `${row('signups')} [data-field=accepted]`))[0]).toBe('120');
    expect((await texts(page, `${row('billing-hook')} th`))[0]).toContain(`/v1/webhooks/${hook.body.id}`);
    // A delivery counts once the API process has written it (about a second); the page refreshes every 5 s.
    await page.waitForFunction(
      (sel) => document.querySelector(sel)?.textContent === '1',
      { timeout: 15_000 },
      `${row('billing-hook')} [data-field=accepted]`,
    );
    // The failing source: its state and its error, as the API has them.
    await page.waitForFunction(
      (sel) => document.querySelector(sel)?.textContent?.includes('failing'),
      {},
      `${row('doomed')} .badge`,
    );
    const error = (await texts(page, `${row('doomed')} [data-field=error] .error-text`))[0] ?? '';
    expect(error).toContain('source_unreadable');
    expect(error).toContain('doomed');
    expect(await page.content()).not.toContain(db.password);
    await tab.screenshot('sources-list');

    // Pause from the page: the API says paused, the page shows it; then resume.
    await clickButton(page, 'Pause', row('signups'));
    await page.waitForFunction(
      (sel) => document.querySelector(sel)?.textContent?.includes('signups is paused'),
      {},
      `${row('signups')} [role=status]`,
    );
    expect(
      (await call(stack.url, `/v1/admin/sources/${signups.body.id}`, { key: ADMIN_KEY })).body.paused,
    ).toBe(true);
    await page.waitForFunction(
      (sel) => document.querySelector(sel)?.textContent === 'paused',
      {},
      `${row('signups')} .badge`,
    );
    await db.pool.query(`INSERT INTO signups VALUES (121, now(), 'pro')`);
    await clickButton(page, 'Resume', row('signups'));
    await page.waitForFunction(
      (sel) => document.querySelector(sel)?.textContent?.includes('signups is resumed'),
      {},
      `${row('signups')} [role=status]`,
    );
    expect(
      (await call(stack.url, `/v1/admin/sources/${signups.body.id}`, { key: ADMIN_KEY })).body.paused,
    ).toBe(false);
    // Resumed, it reads the row added while paused, and the page's counts follow.
    await page.waitForFunction(
      (sel) => document.querySelector(sel)?.textContent === '121',
      { timeout: 30_000 },
      `${row('signups')} [data-field=read]`,
    );
  });
});
