import { randomUUID } from 'node:crypto';
import { describe, expect } from 'vitest';
import { ADMIN_KEY } from '../helpers/env.ts';
import { stackTest } from '../helpers/fixtures.ts';
import { documentedFetch } from '../helpers/openapi.ts';
import { ORDER_SCHEMA } from '../helpers/plans.ts';
import { openLive } from '../helpers/sse.ts';
import { call, event, type Stack, waitFor } from '../helpers/stack.ts';

/**
 * Tracking plans (ARCHITECTURE §14), over HTTP against real Redis and PostgreSQL: schemas per
 * (service, type), versioned; each service's mode and unknown-type rule; the verdict in the
 * ingest response, per event of a batch; Segment calls checked on properties or traits; the
 * dry run and the live view showing the same; a change reaching a second API process.
 */
const test = stackTest({ workers: 1, env: { PLANS_RELOAD_S: '3600' } });

const ORDER = ORDER_SCHEMA;
const GOOD = { orderId: 'o-1', total: 12.5, currency: 'EUR' };
const BAD = { total: -1, currency: 'GBP', coupon: 'X' };
const BAD_DETAILS = [
  { path: 'metadata.orderId', code: 'required', message: 'required by the tracking plan' },
  { path: 'metadata.coupon', code: 'unknown_field', message: 'not in the tracking plan' },
  { path: 'metadata.total', code: 'out_of_range', message: 'must be >= 0' },
  { path: 'metadata.currency', code: 'invalid_value', message: 'must be one of "EUR", "USD"' },
];

const putSchema = (stack: Stack, service: string, type: string, schema: unknown, key?: string) =>
  call(stack.url, `/v1/schemas/${service}/${encodeURIComponent(type)}`, {
    method: 'PUT',
    body: { schema },
    ...(key ? { key } : {}),
  });
const setMode = (stack: Stack, service: string, settings: Record<string, string>) =>
  call(stack.url, `/v1/schemas/${service}`, { method: 'PUT', body: settings });

/** A fresh service with the order schema and these settings. */
async function planned(stack: Stack, settings: Record<string, string>): Promise<string> {
  const service = `tp-${randomUUID().slice(0, 8)}`;
  expect((await putSchema(stack, service, 'order.placed', ORDER)).status).toBe(200);
  expect((await setMode(stack, service, settings)).status).toBe(200);
  return service;
}

describe('writing and reading plans', () => {
  test('PUT numbers versions, the same schema again changes nothing, GET lists and shows them, DELETE removes', async ({
    stack,
  }) => {
    const service = `tp-crud-${randomUUID().slice(0, 6)}`;
    const first = await putSchema(stack, service, 'Order Completed', ORDER);
    expect(first.body).toEqual({ service, type: 'Order Completed', version: 1, changed: true });
    // Key order aside, the same schema: no new version.
    const { required, ...rest } = ORDER;
    expect((await putSchema(stack, service, 'Order Completed', { required, ...rest })).body).toMatchObject({
      version: 1,
      changed: false,
    });
    const v2 = { ...ORDER, required: ['orderId'] };
    expect((await putSchema(stack, service, 'Order Completed', v2)).body).toMatchObject({
      version: 2,
      changed: true,
    });

    const one = await call(stack.url, `/v1/schemas/${service}/Order%20Completed`);
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({
      service,
      type: 'Order Completed',
      version: 2,
      schema: v2,
      deletedAt: null,
    });
    expect(one.body.versions.map((v: { version: number }) => v.version)).toEqual([2, 1]);
    const older = await call(stack.url, `/v1/schemas/${service}/Order%20Completed?version=1`);
    expect(older.body).toMatchObject({ version: 1, schema: ORDER });

    const plan = await call(stack.url, `/v1/schemas/${service}`);
    expect(plan.body).toEqual({
      service,
      mode: 'warn',
      unknownTypes: 'allow',
      types: [{ type: 'Order Completed', version: 2, createdAt: expect.any(String) }],
    });
    const all = await call(stack.url, '/v1/schemas');
    expect(all.body.services.find((s: { service: string }) => s.service === service)).toEqual(plan.body);

    const settings = await setMode(stack, service, { mode: 'reject' });
    expect(settings.body).toEqual({ service, mode: 'reject', unknownTypes: 'allow' });
    expect((await setMode(stack, service, { unknownTypes: 'warn' })).body).toEqual({
      service,
      mode: 'reject',
      unknownTypes: 'warn',
    });

    const removed = await call(stack.url, `/v1/schemas/${service}/Order%20Completed`, { method: 'DELETE' });
    expect(removed.body).toEqual({ service, type: 'Order Completed', version: 2 });
    expect((await call(stack.url, `/v1/schemas/${service}/Order%20Completed`)).status).toBe(404);
    expect(
      (await call(stack.url, `/v1/schemas/${service}/Order%20Completed`, { method: 'DELETE' })).status,
    ).toBe(404);
    // Registered again: the next number, so a version always names one schema.
    expect((await putSchema(stack, service, 'Order Completed', ORDER)).body.version).toBe(3);
    expect((await call(stack.url, `/v1/schemas/${service}`)).body.types).toHaveLength(1);
  });

  test('a malformed schema is refused at PUT with Ajv’s error, and nothing changes', async ({ stack }) => {
    const service = `tp-bad-${randomUUID().slice(0, 6)}`;
    for (const [schema, message] of [
      [{ type: 'object', properties: { a: { type: 'strnig' } } }, /not a valid JSON Schema 2020-12/],
      [{ type: 'object', requried: ['a'] }, /unknown keyword: "requried"/],
      [{ type: 'string', format: 'colour' }, /unknown format "colour"/],
      [{ $ref: 'https://schemas.example.com/order.json' }, /can't resolve reference/],
    ] as const) {
      const res = await putSchema(stack, service, 'order.placed', schema);
      expect(res.status, JSON.stringify(schema)).toBe(400);
      expect(res.body.error.code).toBe('invalid_schema');
      expect(res.body.error.message).toMatch(message);
      expect(res.body.error.details[0]).toMatchObject({ code: 'invalid_schema' });
    }
    expect((await putSchema(stack, service, 'order.placed', [])).status).toBe(400);
    expect((await putSchema(stack, service, 'order.placed', { const: 'a\u0000b' })).body.error.code).toBe(
      'invalid_schema',
    );
    expect((await putSchema(stack, 'no spaces allowed', 'order.placed', ORDER)).body.error.code).toBe(
      'invalid_service',
    );
    expect((await setMode(stack, service, { mode: 'strict' })).body.error.code).toBe('invalid_request');
    expect((await setMode(stack, service, {})).status).toBe(400);
    expect((await call(stack.url, `/v1/schemas/${service}`)).body.types).toEqual([]);
    // The refused schemas never reached ingest: the type is unknown, and allowed.
    const res = await call(stack.url, '/v1/events', { body: event({ service, type: 'order.placed' }) });
    expect(res.status).toBe(202);
    expect(res.body.warnings).toBeUndefined();
  });

  test('keys: writing needs admin; reading needs read or admin, within the key’s services', async ({
    stack,
  }) => {
    const service = await planned(stack, { mode: 'reject' });
    const create = async (body: Record<string, unknown>) =>
      (await call(stack.url, '/v1/admin/keys', { body: { name: 'plans', ...body } })).body.key as string;
    const reader = await create({ scopes: ['read'], services: [service] });
    const otherReader = await create({ scopes: ['read'], services: ['elsewhere'] });
    expect((await putSchema(stack, service, 'order.placed', ORDER, reader)).status).toBe(403);
    expect((await call(stack.url, `/v1/schemas/${service}/order.placed`, { key: reader })).status).toBe(200);
    const forbidden = await call(stack.url, `/v1/schemas/${service}/order.placed`, { key: otherReader });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error.code).toBe('service_not_allowed');
    const listed = await call(stack.url, '/v1/schemas', { key: reader });
    expect(listed.body.services.map((s: { service: string }) => s.service)).toEqual([service]);
    expect((await call(stack.url, '/v1/schemas', { key: otherReader })).body.services).toEqual([]);
  });
});

describe('the verdict in the ingest response', () => {
  test('reject: a failing event is refused with its paths, alone in a batch; a valid one is stored', async ({
    stack,
  }) => {
    const service = await planned(stack, { mode: 'reject' });
    const single = await call(stack.url, '/v1/events', {
      body: event({ service, type: 'order.placed', metadata: BAD }),
    });
    expect(single.status).toBe(400);
    expect(single.body.error).toMatchObject({ code: 'schema_violation', details: BAD_DETAILS });
    expect(single.body.error.message).toMatch(/version 1 of the schema for "order.placed"/);

    const good = event({ service, type: 'order.placed', metadata: GOOD });
    const batch = await call(stack.url, '/v1/events/batch', {
      body: {
        events: [
          good,
          event({ service, type: 'order.placed', metadata: BAD }),
          event({ service, type: 'other' }),
        ],
      },
    });
    expect(batch.status).toBe(202);
    expect(batch.body).toMatchObject({ accepted: 2, ids: [good.id, expect.any(String)] });
    expect(batch.body.rejected).toEqual([
      { index: 1, code: 'schema_violation', message: expect.any(String), details: BAD_DETAILS },
    ]);
    expect(batch.body.warnings).toBeUndefined();
  });

  test('warn: stored, and the response says why', async ({ stack }) => {
    const service = await planned(stack, { mode: 'warn' });
    const single = await call(stack.url, '/v1/events', {
      body: event({ service, type: 'order.placed', metadata: BAD }),
    });
    expect(single.status).toBe(202);
    expect(single.body).toMatchObject({
      status: 'accepted',
      warnings: [{ index: 0, code: 'schema_violation', details: BAD_DETAILS }],
    });
    const batch = await call(stack.url, '/v1/events/batch', {
      body: {
        events: [
          event({ service, type: 'order.placed', metadata: GOOD }),
          event({ service, type: 'order.placed' }),
        ],
      },
    });
    expect(batch.body).toMatchObject({ accepted: 2, rejected: [] });
    expect(batch.body.warnings).toEqual([
      {
        index: 1,
        code: 'schema_violation',
        message: expect.any(String),
        details: [
          { path: 'metadata.orderId', code: 'required', message: 'required by the tracking plan' },
          { path: 'metadata.total', code: 'required', message: 'required by the tracking plan' },
        ],
      },
    ]);

    // Stored with the violations on the row: read back, filtered, and in a subject's export.
    const stored = await waitFor(
      async () => {
        const page = await call(stack.url, `/v1/events?service=${service}&violations=true`);
        return page.body.events.length === 2 ? page.body.events : null;
      },
      20_000,
      'the flagged rows',
    );
    expect(stored.map((e: { id: string }) => e.id).sort()).toEqual(
      [single.body.id, batch.body.ids[1]].sort(),
    );
    expect(stored.find((e: { id: string }) => e.id === single.body.id).violations).toEqual(BAD_DETAILS);
    const clean = await call(stack.url, `/v1/events?service=${service}&violations=false`);
    expect(clean.body.events.map((e: { id: string; violations: unknown }) => [e.id, e.violations])).toEqual([
      [batch.body.ids[0], null],
    ]);
    const user = `tp-user-${randomUUID()}`;
    const flaggedOfUser = event({ service, type: 'order.placed', userId: user, metadata: { total: 1 } });
    expect((await call(stack.url, '/v1/events', { body: flaggedOfUser })).status).toBe(202);
    const line = await waitFor(
      async () => {
        const res = await documentedFetch(`${stack.url}/v1/users/${user}/events/export`, {
          headers: { 'x-api-key': ADMIN_KEY },
        });
        const text = (await res.text()).trim();
        return text ? (JSON.parse(text.split('\n')[0] as string) as Record<string, unknown>) : null;
      },
      20_000,
      'the export line',
    );
    expect(line.violations).toEqual([
      { path: 'metadata.orderId', code: 'required', message: 'required by the tracking plan' },
    ]);
  });

  test('off: nothing is checked', async ({ stack }) => {
    const service = await planned(stack, { mode: 'off', unknownTypes: 'allow' });
    const res = await call(stack.url, '/v1/events', {
      body: event({ service, type: 'order.placed', metadata: BAD }),
    });
    expect(res.status).toBe(202);
    expect(res.body.warnings).toBeUndefined();
  });

  test('unknown types: allowed, flagged or refused with unknown_event_type', async ({ stack }) => {
    const service = await planned(stack, { mode: 'reject', unknownTypes: 'allow' });
    const unknown = () => event({ service, type: 'refund.issued', metadata: { anything: true } });
    const allowed = await call(stack.url, '/v1/events', { body: unknown() });
    expect(allowed.status).toBe(202);
    expect(allowed.body.warnings).toBeUndefined();

    await setMode(stack, service, { unknownTypes: 'warn' });
    const warned = await call(stack.url, '/v1/events', { body: unknown() });
    expect(warned.body.warnings).toEqual([
      {
        index: 0,
        code: 'unknown_event_type',
        message: `service "${service}" has no schema for type "refund.issued"`,
        details: [{ path: 'type', code: 'unknown_event_type', message: 'not in the tracking plan' }],
      },
    ]);

    await setMode(stack, service, { unknownTypes: 'reject' });
    const refused = await call(stack.url, '/v1/events', { body: unknown() });
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe('unknown_event_type');
    const batch = await call(stack.url, '/v1/events/batch', {
      body: { events: [event({ service, type: 'order.placed', metadata: GOOD }), unknown()] },
    });
    expect(batch.body).toMatchObject({ accepted: 1, rejected: [{ index: 1, code: 'unknown_event_type' }] });
    // Another service, with no plan, is not affected.
    expect((await call(stack.url, '/v1/events', { body: event({ type: 'refund.issued' }) })).status).toBe(
      202,
    );
  });

  test('Segment calls: properties of a track call, traits of an identify; refusals inside the 200', async ({
    stack,
  }) => {
    const service = await planned(stack, { mode: 'reject' });
    expect(
      (
        await putSchema(stack, service, 'identify', {
          type: 'object',
          required: ['email'],
          properties: { email: { type: 'string', format: 'email' } },
        })
      ).status,
    ).toBe(200);
    const key = (
      await call(stack.url, '/v1/admin/keys', {
        body: { name: 'segment', scopes: ['ingest'], services: [service] },
      })
    ).body.key as string;
    const res = await call(stack.url, '/v1/batch', {
      key,
      body: {
        batch: [
          { type: 'track', event: 'order.placed', userId: 'u1', properties: GOOD },
          { type: 'track', event: 'order.placed', userId: 'u1', properties: BAD },
          { type: 'identify', userId: 'u1', traits: { email: 'not-an-address' } },
          { type: 'identify', userId: 'u1', traits: { email: 'u1@example.com' } },
          { type: 'alias', userId: 'u1', previousId: 'anon-1' },
        ],
      },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ success: true, accepted: 3 });
    expect(res.body.rejected).toEqual([
      {
        index: 1,
        code: 'schema_violation',
        message: expect.any(String),
        details: BAD_DETAILS.map((d) => ({ ...d, path: d.path.replace('metadata.', 'properties.') })),
      },
      {
        index: 2,
        code: 'schema_violation',
        message: expect.any(String),
        details: [{ path: 'traits.email', code: 'invalid_format', message: 'must match format "email"' }],
      },
    ]);

    // Under warn, the same identify call is stored and says why, on the row too.
    await setMode(stack, service, { mode: 'warn' });
    const messageId = randomUUID();
    const warned = await call(stack.url, '/v1/identify', {
      key,
      body: { userId: 'u2', messageId, traits: { email: 'still-not-an-address' } },
    });
    expect(warned.status).toBe(200);
    const traitIssue = { path: 'traits.email', code: 'invalid_format', message: 'must match format "email"' };
    expect(warned.body).toMatchObject({ accepted: 1, warnings: [{ index: 0, details: [traitIssue] }] });
    const row = await waitFor(
      async () => {
        const page = await call(stack.url, `/v1/events?service=${service}&userId=u2`);
        return page.body.events[0] ?? null;
      },
      20_000,
      'the identify call stored',
    );
    expect(row).toMatchObject({ id: messageId, type: 'identify', violations: [traitIssue] });
  });
});

describe('the dry run and the live view', () => {
  test('the dry run answers the same verdicts, with the violations on the event, and stores nothing', async ({
    stack,
  }) => {
    const service = await planned(stack, { mode: 'reject', unknownTypes: 'warn' });
    const events = [
      event({ service, type: 'order.placed', metadata: BAD }),
      event({ service, type: 'unplanned' }),
      event({ service, type: 'order.placed', metadata: GOOD }),
    ];
    const dry = await call(stack.url, '/v1/events/validate', { body: { events } });
    expect(dry.status).toBe(200);
    expect(dry.body.rejected).toEqual([
      { index: 0, code: 'schema_violation', message: expect.any(String), details: BAD_DETAILS },
    ]);
    expect(dry.body.warnings).toEqual([expect.objectContaining({ index: 1, code: 'unknown_event_type' })]);
    expect(dry.body.results[1]).toMatchObject({
      status: 'accepted',
      warning: { code: 'unknown_event_type' },
      event: { violations: [{ path: 'type', code: 'unknown_event_type' }] },
    });
    expect(dry.body.results[2].event.violations).toBeUndefined();
    // The real request answers the same.
    const real = await call(stack.url, '/v1/events/batch', { body: { events } });
    const { dryRun: _d, results: _r, ...answer } = dry.body;
    expect(real.body).toEqual(answer);
    // What the dry run saw was never stored; what the real request accepted was.
    const rows = async (id: unknown) =>
      (await stack.env.pool.query('SELECT 1 FROM events WHERE id = $1', [id])).rowCount ?? 0;
    await waitFor(async () => (await rows(events[2]?.id)) === 1, 20_000, 'the real request stored');
    expect(await rows(events[0]?.id)).toBe(0);
  });

  test('the live view shows a refusal’s paths and a flagged event’s violations', async ({ stack }) => {
    const service = await planned(stack, { mode: 'reject', unknownTypes: 'warn' });
    const live = await openLive(stack.url, { query: `service=${service}` });
    try {
      expect(live.status).toBe(200);
      await call(stack.url, '/v1/events/batch', {
        body: {
          events: [
            event({ service, type: 'order.placed', metadata: BAD }),
            event({ service, type: 'unplanned' }),
          ],
        },
      });
      const [refused, flagged] = (await live.collect('outcome', 2)).map((f) => f.data);
      expect(refused).toMatchObject({
        outcome: 'refused',
        index: 0,
        code: 'schema_violation',
        details: BAD_DETAILS,
      });
      expect(flagged).toMatchObject({
        outcome: 'accepted',
        index: 1,
        event: { violations: [{ path: 'type', code: 'unknown_event_type' }] },
      });
    } finally {
      live.close();
    }
  });
});

describe('every API process', () => {
  test('applies a change within a second (pub/sub; the reload timer is an hour here)', async ({ stack }) => {
    const second = await stack.env.start('serve', { PLANS_RELOAD_S: '3600' });
    try {
      const service = `tp-two-${randomUUID().slice(0, 6)}`;
      const bad = () => event({ service, type: 'order.placed', metadata: BAD });
      expect((await call(second.url, '/v1/events', { body: bad() })).status).toBe(202);
      await setMode(stack, service, { mode: 'reject' });
      const asked = Date.now();
      expect((await putSchema(stack, service, 'order.placed', ORDER)).status).toBe(200);
      await waitFor(
        async () => (await call(second.url, '/v1/events', { body: bad() })).status === 400,
        5_000,
        'refused',
      );
      const ms = Date.now() - asked;
      console.log('schema in effect on the second API process after', ms, 'ms');
      expect(ms).toBeLessThan(1_000);
      // A new version reaches it too: this one allows a negative total.
      const v2 = { type: 'object', properties: { total: { type: 'number' } } };
      expect((await putSchema(stack, service, 'order.placed', v2)).body.version).toBe(2);
      await waitFor(
        async () => (await call(second.url, '/v1/events', { body: bad() })).status === 202,
        1_000,
        'v2',
      );
      // And a deletion.
      await call(stack.url, `/v1/schemas/${service}/order.placed`, { method: 'DELETE' });
      await setMode(stack, service, { unknownTypes: 'reject' });
      await waitFor(
        async () =>
          (await call(second.url, '/v1/events', { body: bad() })).body.error?.code === 'unknown_event_type',
        1_000,
        'deleted',
      );
    } finally {
      await second.stop();
    }
  });

  test('counts violations by service and registered type, and by reason among refusals', async ({
    stack,
  }) => {
    const service = await planned(stack, { mode: 'reject', unknownTypes: 'warn' });
    await call(stack.url, '/v1/events/batch', {
      body: {
        events: [
          event({ service, type: 'order.placed', metadata: BAD }),
          event({ service, type: 'order.placed', metadata: BAD }),
          event({ service, type: `made-up-${randomUUID()}` }),
        ],
      },
    });
    const metrics = (await call(stack.url, '/metrics')).body as string;
    const value = (labels: string) =>
      Number(new RegExp(`^tributary_schema_violations_total\\{${labels}\\} (\\d+)`, 'm').exec(metrics)?.[1]);
    expect(value(`service="${service}",type="order.placed",action="rejected"`)).toBe(2);
    expect(value(`service="${service}",type="\\(unregistered\\)",action="warned"`)).toBe(1);
    expect(metrics).not.toMatch(/made-up-/);
    expect(metrics).toMatch(/^tributary_events_rejected_total\{reason="schema_violation"\} [1-9]/m);
  });
});
