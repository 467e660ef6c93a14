import type { ErrorObject } from 'ajv';
import { describe, expect, it } from 'vitest';
import type { NormalisedEvent } from '../../src/events/event.schema.ts';
import {
  compilePlanSchema,
  linearFallbackRegExp,
  PlanBook,
  type PlanSettings,
  planIssues,
  UNREGISTERED_TYPE,
} from '../../src/events/plans.ts';
import { ORDER_SCHEMA } from '../helpers/plans.ts';

const ORDER = {
  ...ORDER_SCHEMA,
  properties: {
    ...ORDER_SCHEMA.properties,
    email: { type: 'string', format: 'email' },
    items: {
      type: 'array',
      items: { type: 'object', properties: { sku: { type: 'string' } }, required: ['sku'] },
    },
  },
};

function compiled(schema: unknown) {
  const result = compilePlanSchema(schema);
  if (!result.ok) throw new Error(result.message);
  return result.validate;
}

function issuesOf(schema: unknown, value: unknown, root = 'metadata') {
  const validate = compiled(schema);
  expect(validate(value)).toBe(false);
  return planIssues(validate.errors ?? [], root);
}

describe('compilePlanSchema', () => {
  it('compiles a 2020-12 schema with formats', () => {
    const validate = compiled(ORDER);
    expect(validate({ orderId: 'o-1', total: 3, email: 'a@example.com' })).toBe(true);
    expect(validate({ orderId: 'o-1', total: 3, email: 'not an address' })).toBe(false);
  });

  it('refuses what is not a schema object, with Ajv’s words and the path into the body', () => {
    expect(compilePlanSchema([])).toMatchObject({
      ok: false,
      details: [{ path: 'schema', code: 'invalid_type' }],
    });
    const bad = compilePlanSchema({ type: 'object', properties: { a: { type: 'strnig' } } });
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.message).toMatch(/not a valid JSON Schema 2020-12/);
    expect(
      bad.details.some((d) => d.path === 'schema.properties.a.type' && d.code === 'invalid_schema'),
    ).toBe(true);
  });

  it('refuses an unknown keyword (a typo checks nothing), an unknown format and an unresolved $ref', () => {
    for (const schema of [
      { type: 'object', requried: ['a'] },
      { type: 'string', format: 'no-such-format' },
      { $ref: 'https://example.com/remote.json' },
    ]) {
      const result = compilePlanSchema(schema);
      expect(result.ok, JSON.stringify(schema)).toBe(false);
      if (!result.ok) expect(result.details[0]?.code).toBe('invalid_schema');
    }
  });

  it('lets two schemas share an $id (each has its own Ajv)', () => {
    expect(compilePlanSchema({ $id: 'https://example.com/x', type: 'object' }).ok).toBe(true);
    expect(compilePlanSchema({ $id: 'https://example.com/x', type: 'object' }).ok).toBe(true);
  });
});

describe('linearFallbackRegExp', () => {
  it('drops the u flag only where the pattern means the same without it', () => {
    expect(linearFallbackRegExp('^[a-z]+(-[0-9]{2})?$', 'u').flags).toBe('');
    expect(linearFallbackRegExp('^\\p{Lu}', 'u').flags).toBe('u');
    expect(linearFallbackRegExp('^\\u{1F600}$', 'u').flags).toBe('u');
    expect(linearFallbackRegExp('^café$', 'u').flags).toBe('u');
  });
});

describe('planIssues: Ajv errors as details', () => {
  it('names the missing or unexpected property in the path', () => {
    expect(issuesOf(ORDER, { total: 1, coupon: 'x' })).toEqual([
      { path: 'metadata.orderId', code: 'required', message: 'required by the tracking plan' },
      { path: 'metadata.coupon', code: 'unknown_field', message: 'not in the tracking plan' },
    ]);
  });

  it('maps keywords to the API’s codes, with nested and array paths', () => {
    const issues = issuesOf(ORDER, {
      orderId: '',
      total: -1,
      currency: 'GBP',
      email: 'nope',
      items: [{ sku: 'a' }, { sku: 3 }, {}],
    });
    expect(issues).toEqual([
      { path: 'metadata.orderId', code: 'invalid_length', message: 'must NOT have fewer than 1 characters' },
      { path: 'metadata.total', code: 'out_of_range', message: 'must be >= 0' },
      { path: 'metadata.currency', code: 'invalid_value', message: 'must be one of "EUR", "USD"' },
      { path: 'metadata.email', code: 'invalid_format', message: 'must match format "email"' },
      { path: 'metadata.items.1.sku', code: 'invalid_type', message: 'must be string' },
      { path: 'metadata.items.2.sku', code: 'required', message: 'required by the tracking plan' },
    ]);
  });

  it('never repeats a value the event sent', () => {
    const issues = issuesOf(ORDER, { orderId: 'secret-value', total: 'also-secret', currency: 'GBP-secret' });
    expect(JSON.stringify(issues)).not.toMatch(/secret/);
  });

  it('unescapes JSON Pointer segments and roots a Segment call at properties', () => {
    const schema = {
      type: 'object',
      properties: { 'a/b': { type: 'object', properties: { '~c': { type: 'integer' } } } },
    };
    expect(issuesOf(schema, { 'a/b': { '~c': 1.5 } }, 'properties')).toEqual([
      { path: 'properties.a/b.~c', code: 'invalid_type', message: 'must be integer' },
    ]);
  });

  it('drops errors that only restate their sub-schemas, and keeps one when nothing else is left', () => {
    const anyOf = { type: 'object', properties: { v: { anyOf: [{ type: 'string' }, { type: 'integer' }] } } };
    const issues = issuesOf(anyOf, { v: 1.5 });
    expect(issues.map((i) => i.code)).toEqual(['invalid_type']);
    expect(issues[0]?.path).toBe('metadata.v');
    expect(issuesOf({ not: { type: 'object' } }, {})).toEqual([
      { path: 'metadata', code: 'not', message: 'must NOT be valid' },
    ]);
  });

  it('keeps at most 10, each path and code once', () => {
    const props = Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`p${i}`, { type: 'string' }]));
    const schema = { type: 'object', properties: props, required: Object.keys(props) };
    expect(issuesOf(schema, {})).toHaveLength(10);
    const twice: ErrorObject[] = [
      { keyword: 'type', instancePath: '/a', schemaPath: '#/x', params: {}, message: 'must be string' },
      { keyword: 'type', instancePath: '/a', schemaPath: '#/y', params: {}, message: 'must be string' },
    ];
    expect(planIssues(twice, 'metadata')).toHaveLength(1);
  });
});

function book(settings: PlanSettings, types: Record<string, unknown>) {
  return new PlanBook(
    new Map([
      [
        'shop',
        {
          settings,
          types: new Map(
            Object.entries(types).map(([type, schema]) => [type, { version: 2, validate: compiled(schema) }]),
          ),
        },
      ],
    ]),
  );
}

const native = (type: string, metadata?: Record<string, unknown>): NormalisedEvent => ({
  id: '0a5e3a9b-6a43-4d4e-9d1b-2f6f3f0f8e11',
  service: 'shop',
  type,
  timestamp: '2026-12-05T00:00:00.000Z',
  receivedAt: '2026-12-05T00:00:00.000Z',
  ...(metadata ? { metadata } : {}),
});

describe('PlanBook.check', () => {
  it('passes a valid event and one of a service with no plan', () => {
    const b = book({ mode: 'reject', unknownTypes: 'reject' }, { order: ORDER });
    expect(b.check(native('order', { orderId: 'o', total: 1 }), false)).toBeUndefined();
    expect(b.check({ ...native('order'), service: 'other' }, false)).toBeUndefined();
  });

  it('checks missing metadata as {}', () => {
    const verdict = book({ mode: 'reject', unknownTypes: 'allow' }, { order: ORDER }).check(
      native('order'),
      false,
    );
    expect(verdict).toMatchObject({
      action: 'reject',
      code: 'schema_violation',
      service: 'shop',
      label: 'order',
    });
    expect(verdict?.message).toMatch(/version 2/);
  });

  it('follows the mode for registered types and unknownTypes for the others', () => {
    const bad = native('order', { total: 1 });
    expect(book({ mode: 'off', unknownTypes: 'reject' }, { order: ORDER }).check(bad, false)).toBeUndefined();
    expect(book({ mode: 'warn', unknownTypes: 'allow' }, { order: ORDER }).check(bad, false)?.action).toBe(
      'warn',
    );
    const unknown = native('refund');
    expect(
      book({ mode: 'reject', unknownTypes: 'allow' }, { order: ORDER }).check(unknown, false),
    ).toBeUndefined();
    expect(book({ mode: 'off', unknownTypes: 'warn' }, {}).check(unknown, false)).toMatchObject({
      action: 'warn',
      code: 'unknown_event_type',
      label: UNREGISTERED_TYPE,
      details: [{ path: 'type', code: 'unknown_event_type' }],
    });
  });

  it('checks a Segment call’s properties or traits, and never an alias', () => {
    const b = book(
      { mode: 'reject', unknownTypes: 'reject' },
      { order: ORDER, identify: { required: ['email'] } },
    );
    const track = native('order', {
      segmentType: 'track',
      properties: { orderId: 'o', total: 1 },
      context: {},
    });
    expect(b.check(track, true)).toBeUndefined();
    // The same event sent natively is checked on its whole metadata.
    expect(b.check(track, false)?.details.map((d) => d.path)).toContain('metadata.segmentType');
    const identify = native('identify', { segmentType: 'identify', traits: {} });
    expect(b.check(identify, true)?.details).toEqual([
      { path: 'traits.email', code: 'required', message: 'required by the tracking plan' },
    ]);
    expect(b.check(native('alias', { segmentType: 'alias', previousId: 'a' }), true)).toBeUndefined();
  });

  it('does not check a registered type whose schema could not be compiled, nor call it unknown', () => {
    const b = new PlanBook(
      new Map([
        [
          'shop',
          {
            settings: { mode: 'reject', unknownTypes: 'reject' } as PlanSettings,
            types: new Map([['order', null]]),
          },
        ],
      ]),
    );
    expect(b.check(native('order'), false)).toBeUndefined();
  });
});
