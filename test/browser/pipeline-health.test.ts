import { describe, expect } from 'vitest';
import { DeadLetterStream } from '../../src/buffer/dead-letter.ts';
import { bufferKeys } from '../../src/buffer/keys.ts';
import { consoleTest, signIn, texts } from '../helpers/browser.ts';
import { ADMIN_KEY } from '../helpers/env.ts';
import { call, waitFor } from '../helpers/stack.ts';

// Pipeline health in a real Chromium against a real stack (serve + one worker): partitions,
// workers and breaker from GET /health, and a dead letter replayed from the page.

const test = consoleTest();
/** The stack's STREAM_PARTITIONS (the default). */
const PARTITIONS = 8;

describe('pipeline health', () => {
  test('shows the buffer per partition, the worker and its breaker', async ({ stack, tab }) => {
    const { page } = tab;
    await signIn(page, stack.url, ADMIN_KEY, '#/pipeline');
    await page.waitForFunction(
      () => document.querySelector('[data-testid=breaker]')?.textContent === 'closed',
    );
    expect(await texts(page, 'table.partitions tbody th')).toEqual(
      Array.from({ length: PARTITIONS }, (_, p) => String(p)),
    );
    const workers = await texts(page, 'section[aria-labelledby=workers-heading] tbody tr');
    expect(workers).toHaveLength(1);
    expect(workers[0]).toContain('closed');
    // The worker's checkpoint volume and memory, as it reports them; reads on the primary.
    expect((await texts(page, 'td[data-testid=disk]'))[0]).toMatch(/^[\d.]+ [KMGT]i?B of [\d.]+ [KMGT]i?B$/);
    expect((await texts(page, 'td[data-testid=memory]'))[0]).toMatch(/^[\d.]+ [KMG]i?B$/);
    expect(await texts(page, '[data-testid=reads]')).toEqual(['primary (no replica)']);
    expect((await texts(page, '.card dd'))[0]).toBe('ok');
    await tab.screenshot('pipeline-health');
  });

  test('replays a dead letter: the count goes to zero, the event is stored, the call is audited as the signed-in key', async ({
    stack,
    tab,
  }) => {
    const { page } = tab;
    const created = await call(stack.url, '/v1/admin/keys', {
      body: { name: 'console-admin', scopes: ['admin'] },
    });
    expect(created.status).toBe(201);
    // A dead letter the way the worker writes one (dead-letter-replay.test.ts): an event that
    // failed, whose cause has since been fixed, so the replayed entry is stored.
    const now = new Date().toISOString();
    const id = crypto.randomUUID();
    const json = JSON.stringify({
      id,
      service: 'console',
      type: 'replayed',
      timestamp: now,
      receivedAt: now,
    });
    await new DeadLetterStream({
      redis: stack.env.redis,
      keys: bufferKeys(stack.env.prefix, PARTITIONS),
    }).record([
      {
        entry: { partition: 3, id: '1-0', version: '1', event: json, traceparent: '', deliveries: 5 },
        error: 'insert failed',
      },
    ]);

    await signIn(page, stack.url, created.body.key, '#/pipeline');
    await page.waitForFunction(
      () => document.querySelector('[data-testid=dead-letters]')?.textContent === '1',
    );
    await page.click('xpath/.//button[contains(., "Replay dead letters")]');
    await page.waitForSelector('xpath/.//button[contains(., "Replay now")]');
    await tab.screenshot('pipeline-health-replay-confirm');
    await page.click('xpath/.//button[contains(., "Replay now")]');
    await page.waitForFunction(
      () => document.querySelector('[role=status] .notice')?.textContent === 'Replayed 1 entry.',
    );
    await page.waitForFunction(
      () => document.querySelector('[data-testid=dead-letters]')?.textContent === '0',
    );

    await waitFor(
      async () => (await stack.env.pool.query('SELECT 1 FROM events WHERE id = $1', [id])).rowCount === 1,
      10_000,
      'the replayed event stored',
    );
    const audited = await stack.env.pool.query<{ key_id: string; status: number }>(
      `SELECT key_id, status FROM audit_log WHERE path = '/v1/admin/dead-letter/replay'`,
    );
    expect(audited.rows).toEqual([{ key_id: created.body.id, status: 200 }]);
  });
});
