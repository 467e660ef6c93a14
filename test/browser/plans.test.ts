import { describe, expect } from 'vitest';
import { consoleTest, PHONE, signIn, texts } from '../helpers/browser.ts';
import { call } from '../helpers/stack.ts';
import { auditedCalls, clickButton, createKey, sideScroll } from './api-calls.ts';

// The tracking-plans page in a real Chromium against a real stack: a schema registered through
// the page and listed; a malformed one refused with Ajv's words and nothing stored; the mode
// set to reject; events tried through the dry run (refused with their paths, passing, flagged
// as an unknown type), nothing stored; the type removed after a confirmation. A `read` key
// sees the plans but no write controls.

const test = consoleTest();
const SERVICE = 'plans-shop';

/** Waits until some element matching `selector` has `text` in its text. */
const waitForContaining = (page: import('puppeteer-core').Page, selector: string, text: string) =>
  page.waitForFunction(
    (sel, want) => [...document.querySelectorAll(sel)].some((e) => e.textContent?.includes(want as string)),
    { timeout: 15_000 },
    selector,
    text,
  );

const setValue = async (page: import('puppeteer-core').Page, selector: string, value: string) => {
  await page.$eval(
    selector,
    (e, v) => {
      const field = e as HTMLInputElement | HTMLTextAreaElement;
      field.value = v as string;
      field.dispatchEvent(new Event('input', { bubbles: true }));
    },
    value,
  );
};

/** Saves `schema` for order.placed from the editor; waits until it is listed as `version`. */
async function saveSchema(page: import('puppeteer-core').Page, schema: object, version: number) {
  await setValue(page, '#editor-schema', JSON.stringify(schema));
  await clickButton(page, 'Save schema');
  await waitForContaining(
    page,
    '[aria-labelledby=editor-heading] [role=status]',
    `Registered version ${version} of order.placed.`,
  );
  await waitForContaining(page, `tr[data-service="${SERVICE}"]`, `order.placed v${version}`);
}

describe('tracking plans page', () => {
  test('register, refuse a bad schema, set the mode, try events, remove', async ({ stack, tab }) => {
    const { page } = tab;
    const admin = await createKey(stack.url, 'plans-admin', ['admin', 'ingest']);
    // The malformed schema below is answered 400, which the browser logs.
    tab.expectProblem(/status of 400/);
    await signIn(page, stack.url, admin.key, '#/plans');
    await waitForContaining(page, 'main .empty', 'No service has a tracking plan yet');

    // A malformed schema: Ajv's words beside the editor, the text kept, nothing stored.
    await setValue(page, '#editor-service', SERVICE);
    await setValue(page, '#editor-type', 'order.placed');
    const typo = '{"type":"object","requried":["orderId"]}';
    await setValue(page, '#editor-schema', typo);
    await clickButton(page, 'Save schema');
    await waitForContaining(page, '[aria-labelledby=editor-heading] [role=alert]', 'invalid_schema');
    expect((await texts(page, '[aria-labelledby=editor-heading] [role=alert]'))[0]).toContain(
      'unknown keyword: "requried"',
    );
    expect(await page.$eval('#editor-schema', (e) => (e as HTMLTextAreaElement).value)).toBe(typo);
    expect((await call(stack.url, `/v1/schemas/${SERVICE}`)).body.types).toEqual([]);
    // Not JSON at all: said on the page, nothing sent.
    await setValue(page, '#editor-schema', '{"type": ');
    await clickButton(page, 'Save schema');
    await waitForContaining(page, '#editor-problem', 'not a JSON object');

    const schema = {
      type: 'object',
      properties: { orderId: { type: 'string' }, total: { type: 'number', minimum: 0 } },
      required: ['orderId'],
    };
    await saveSchema(page, schema, 1);
    // Selected: its schema is shown, pretty.
    await waitForContaining(page, '.schema-json', '"orderId"');
    expect((await call(stack.url, `/v1/schemas/${SERVICE}/order.placed`)).body).toMatchObject({
      version: 1,
      schema,
    });
    // The list now shows the type as registered, which did not reload its schema over the
    // editor's text (it would come back pretty-printed).
    expect(await page.$eval('#editor-schema', (e) => (e as HTMLTextAreaElement).value)).toBe(
      JSON.stringify(schema),
    );

    // A second version of the type on view: the view follows it at once.
    const second = { ...schema, properties: { ...schema.properties, coupon: { type: 'string' } } };
    await saveSchema(page, second, 2);
    await waitForContaining(page, '.schema-json', '"coupon"');
    await waitForContaining(page, 'main p', 'Version 2, registered');

    // Reject mode, unknown types flagged.
    await page.select('#plan-mode', 'reject');
    await page.select('#plan-unknown', 'warn');
    await clickButton(page, 'Save settings');
    await waitForContaining(
      page,
      '[aria-labelledby=settings-heading] [role=status]',
      'mode reject, unknown types warn',
    );
    expect((await call(stack.url, `/v1/schemas/${SERVICE}`)).body).toMatchObject({
      mode: 'reject',
      unknownTypes: 'warn',
    });

    // Try: a failing event, refused with its paths; a passing one; an unknown type, flagged.
    await setValue(page, '#try-service', SERVICE);
    await setValue(page, '#try-type', 'order.placed');
    await setValue(page, '#try-metadata', '{"total": -5}');
    await clickButton(page, 'Check the event');
    await waitForContaining(page, '[data-testid=verdict]', 'Would be refused');
    const refused = (await texts(page, '[data-testid=verdict] li')).map((t) => t.replace(/\s+/g, ' '));
    expect(refused).toEqual([
      'metadata.orderId required required by the tracking plan',
      'metadata.total out_of_range must be >= 0',
    ]);
    await tab.screenshot('plans-refused');
    await setValue(page, '#try-metadata', '{"orderId": "o-1", "total": 5}');
    await clickButton(page, 'Check the event');
    await waitForContaining(page, '[data-testid=verdict]', 'Would be accepted: it passes the plan.');
    await setValue(page, '#try-type', 'refund.issued');
    await clickButton(page, 'Check the event');
    await waitForContaining(page, '[data-testid=verdict]', 'Would be stored, flagged: unknown_event_type');
    // A dry run: nothing was stored.
    expect((await call(stack.url, `/v1/events?service=${SERVICE}`)).body.events).toEqual([]);

    // Remove the type, after a confirmation.
    await clickButton(page, 'Remove…');
    await page.waitForFunction(() => document.activeElement?.textContent === 'Remove the schema');
    await page.keyboard.press('Enter');
    await waitForContaining(page, `tr[data-service="${SERVICE}"]`, '—');
    expect((await call(stack.url, `/v1/schemas/${SERVICE}/order.placed`)).status).toBe(404);

    await page.setViewport(PHONE);
    expect(await sideScroll(page)).toBeLessThanOrEqual(0);
    const changes = (await auditedCalls(stack.url, admin.id)).filter((c) => c.method !== 'GET');
    expect(changes.map((c) => [c.action, c.status])).toEqual([
      ['schemas.set', 400],
      ['schemas.set', 200],
      ['schemas.set', 200],
      ['schemas.set', 200],
      ['schemas.delete', 200],
    ]);
  });

  test('a read key sees the plans, and no control that writes', async ({ stack, tab }) => {
    const { page } = tab;
    await call(stack.url, '/v1/schemas/plans-read/signup', {
      method: 'PUT',
      body: { schema: { type: 'object' } },
    });
    const reader = await createKey(stack.url, 'plans-reader', ['read']);
    await signIn(page, stack.url, reader.key, '#/plans?service=plans-read&type=signup');
    await waitForContaining(page, 'tr[data-service="plans-read"]', 'signup v1');
    await waitForContaining(page, '.schema-json', '"object"');
    for (const selector of ['#editor-schema', '#plan-mode', '#try-metadata'])
      expect(await page.$(selector)).toBeNull();
    const buttons = await texts(page, 'main button');
    expect(buttons.some((b) => b.startsWith('Remove'))).toBe(false);
  });
});
