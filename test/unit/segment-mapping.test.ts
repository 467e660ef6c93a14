import { describe, expect, it } from 'vitest';
import { parseEvent } from '../../src/events/event.schema.ts';
import {
  correctedTimestamp,
  eventIdOf,
  MESSAGE_ID_NAMESPACE,
  mapSegmentCall,
  uuidV5,
} from '../../src/events/segment.ts';

const receivedAt = Date.parse('2026-06-15T12:00:00.000Z');
const opts = { service: 'web-shop', receivedAt };
const HOUR = 3_600_000;

function mapped(call: unknown, extra: Partial<Parameters<typeof mapSegmentCall>[1]> = {}) {
  const r = mapSegmentCall(call, { ...opts, ...extra });
  if (!r.ok) throw new Error(JSON.stringify(r));
  return r.input;
}

describe('UUIDv5', () => {
  it('matches the RFC 9562 / Python uuid5 vector (DNS namespace, www.example.com)', () => {
    expect(uuidV5('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'www.example.com')).toBe(
      '2ed6657d-e927-568b-95e1-2665a8aea6a2',
    );
  });

  it('event ids: a UUID messageId lower-cased, any other one derived from service and messageId', () => {
    expect(eventIdOf('s', 'A1B2C3D4-0000-4000-8000-00000000000F')).toBe(
      'a1b2c3d4-0000-4000-8000-00000000000f',
    );
    const id = eventIdOf('web-shop', 'node-next-1700000000000-abc');
    expect(id).toBe(uuidV5(MESSAGE_ID_NAMESPACE, 'web-shop\u0000node-next-1700000000000-abc'));
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(eventIdOf('web-shop', 'node-next-1700000000000-abc')).toBe(id);
    expect(eventIdOf('other', 'node-next-1700000000000-abc')).not.toBe(id);
    expect(eventIdOf('web-shop', 'node-next-1700000000000-abd')).not.toBe(id);
  });
});

describe('clock skew (Segment’s rule)', () => {
  it('receivedAt − (sentAt − timestamp), whatever the client’s clock says', () => {
    // A phone one hour fast: it stamped the event 10 s before sending.
    const ts = new Date(receivedAt + HOUR - 10_000).toISOString();
    const sent = new Date(receivedAt + HOUR).toISOString();
    expect(correctedTimestamp(receivedAt, sent, ts)).toBe(receivedAt - 10_000);
  });

  it('no sentAt: the timestamp as is; no timestamp: the receive time; not a date: undefined', () => {
    expect(correctedTimestamp(receivedAt, undefined, '2026-06-15T11:00:00Z')).toBe(receivedAt - HOUR);
    expect(correctedTimestamp(receivedAt, 'garbage', '2026-06-15T11:00:00Z')).toBe(receivedAt - HOUR);
    expect(correctedTimestamp(receivedAt, '2026-06-15T12:00:00Z', undefined)).toBe(receivedAt);
    expect(correctedTimestamp(receivedAt, undefined, 'yesterday')).toBeUndefined();
    expect(correctedTimestamp(receivedAt, undefined, 12)).toBeUndefined();
  });

  it('takes originalTimestamp when there is no timestamp, and the batch’s sentAt when the call has none', () => {
    const input = mapped(
      { type: 'track', event: 'E', originalTimestamp: '2026-06-15T13:00:00.000Z' },
      { batch: { sentAt: '2026-06-15T13:00:05.000Z' } },
    );
    expect(input.timestamp).toBe('2026-06-15T11:59:55.000Z');
    expect(input.metadata).toMatchObject({ sentAt: '2026-06-15T13:00:05.000Z' });
    const own = mapped(
      {
        type: 'track',
        event: 'E',
        timestamp: '2026-06-15T13:00:00.000Z',
        sentAt: '2026-06-15T13:00:01.000Z',
      },
      { batch: { sentAt: '2026-06-15T14:00:00.000Z' } },
    );
    expect(own.timestamp).toBe('2026-06-15T11:59:59.000Z');
  });
});

describe('a Segment call as an event', () => {
  it('track: event name as type, ids as columns, every other field in metadata', () => {
    const call = {
      type: 'track',
      event: 'Order Completed',
      messageId: 'node-next-1-x',
      userId: 'u-1',
      anonymousId: 'a-1',
      properties: { total: 10 },
      context: { library: { name: 'analytics-node' } },
      integrations: { All: true },
      _metadata: { nodeVersion: '24' },
      timestamp: '2026-06-15T11:59:00.000Z',
      writeKey: 'trb_secret',
    };
    expect(mapped(call)).toEqual({
      id: eventIdOf('web-shop', 'node-next-1-x'),
      service: 'web-shop',
      type: 'Order Completed',
      timestamp: '2026-06-15T11:59:00.000Z',
      userId: 'u-1',
      anonymousId: 'a-1',
      metadata: {
        segmentType: 'track',
        messageId: 'node-next-1-x',
        properties: { total: 10 },
        context: { library: { name: 'analytics-node' } },
        integrations: { All: true },
        _metadata: { nodeVersion: '24' },
        timestamp: '2026-06-15T11:59:00.000Z',
      },
    });
  });

  it('other calls: the call type as type; a UUID messageId is the id and not repeated', () => {
    const messageId = crypto.randomUUID();
    for (const type of ['identify', 'page', 'screen', 'group'] as const) {
      const input = mapped(
        { messageId, userId: 'u', traits: { plan: 'pro' }, name: 'N', groupId: 'g' },
        { routeType: type },
      );
      expect(input.type).toBe(type);
      expect(input.id).toBe(messageId);
      expect(input.metadata).toEqual({ segmentType: type, traits: { plan: 'pro' }, name: 'N', groupId: 'g' });
    }
  });

  it('alias: userId and metadata.previousId, both required', () => {
    const input = mapped({ type: 'alias', userId: 'u-1', previousId: 'anon-1' });
    expect(input).toMatchObject({
      type: 'alias',
      userId: 'u-1',
      metadata: { segmentType: 'alias', previousId: 'anon-1' },
    });
    expect(mapSegmentCall({ type: 'alias', userId: 'u-1' }, opts)).toMatchObject({
      ok: false,
      code: 'invalid_event',
    });
    expect(mapSegmentCall({ type: 'alias', previousId: 'p' }, opts)).toMatchObject({
      ok: false,
      code: 'invalid_event',
    });
  });

  it('the route’s type wins over the call’s; a batch call needs a known type; track needs an event', () => {
    expect(mapped({ type: 'page', userId: 'u' }, { routeType: 'identify' }).type).toBe('identify');
    const bad = mapSegmentCall({ type: 'purchase', userId: 'u' }, opts);
    expect(bad).toMatchObject({ ok: false, code: 'invalid_event', details: [{ path: 'type' }] });
    const noEvent = mapSegmentCall({ type: 'track', userId: 'u' }, opts);
    expect(noEvent).toMatchObject({
      ok: false,
      code: 'invalid_event',
      details: [{ path: 'event', code: 'required' }],
    });
    expect(mapSegmentCall('track', opts)).toMatchObject({ ok: false, code: 'invalid_event' });
    expect(mapSegmentCall({ type: 'track', event: 'E', timestamp: 'soon' }, opts)).toMatchObject({
      ok: false,
      details: [{ path: 'timestamp' }],
    });
  });

  it('merges the batch’s context and integrations under the call’s, key by key', () => {
    const input = mapped(
      {
        type: 'track',
        event: 'E',
        context: { ip: '1.2.3.4', app: { v: 2 } },
        integrations: { Mixpanel: false },
      },
      { batch: { context: { app: { v: 1 }, library: { name: 'rudder' } }, integrations: { All: true } } },
    );
    expect(input.metadata).toMatchObject({
      context: { app: { v: 2 }, library: { name: 'rudder' }, ip: '1.2.3.4' },
      integrations: { All: true, Mixpanel: false },
    });
    const onlyBatch = mapped(
      { type: 'track', event: 'E' },
      { batch: { context: { library: { name: 'x' } } } },
    );
    expect(onlyBatch.metadata).toMatchObject({ context: { library: { name: 'x' } } });
    expect(mapped({ type: 'track', event: 'E' }).metadata).toEqual({ segmentType: 'track' });
  });

  it('numbers as subject ids become text; no messageId leaves the id to parseEvent', () => {
    const input = mapped({ type: 'identify', userId: 42, anonymousId: 7 });
    expect(input).toMatchObject({ userId: '42', anonymousId: '7' });
    expect(input.id).toBeUndefined();
  });

  it('what it makes passes parseEvent, which still applies the native rules', () => {
    const ctx = { now: receivedAt, maxAgeMs: 30 * 86_400_000 };
    const ok = parseEvent(mapped({ type: 'track', event: 'E', userId: 'u', messageId: 'm-1' }), ctx);
    expect(ok.ok).toBe(true);
    const deep = parseEvent(mapped({ type: 'track', event: 'E', properties: { constructor: 1 } }), ctx);
    expect(deep).toMatchObject({ ok: false, issues: [{ code: 'forbidden_key' }] });
    const long = parseEvent(mapped({ type: 'track', event: 'E'.repeat(129) }), ctx);
    expect(long).toMatchObject({ ok: false, issues: [{ path: 'type' }] });
  });
});
