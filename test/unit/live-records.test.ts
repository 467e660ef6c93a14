import { describe, expect, it } from 'vitest';
import type { NormalisedEvent } from '../../src/events/event.schema.ts';
import { parseJsonExact } from '../../src/events/json-numbers.ts';
import {
  compareIds,
  decodeEntry,
  encodeEntry,
  type LiveEntry,
  parseLastEventId,
  type RequestPart,
  type StoredHeader,
} from '../../src/live/entry.ts';
import { LiveRequest, MAX_INPUT_BYTES } from '../../src/live/outcomes.ts';

/** What a LiveRequest publishes, and the frames a reader makes of it (through an entry). */
function recorder() {
  const requests: RequestPart[] = [];
  const headers: StoredHeader[] = [];
  const rests: string[] = [];
  const entry = () =>
    decodeEntry(
      '9-0',
      encodeEntry(requests, headers, rests.join('\n')).map((f) => Buffer.from(f)),
    ) as LiveEntry;
  return {
    sink: {
      publish(request: RequestPart, header: StoredHeader, rest: string) {
        if (!requests.includes(request)) requests.push(request);
        header[3] = requests.indexOf(request);
        headers.push(header);
        rests.push(rest);
      },
    },
    rests,
    headers: () => entry().headers,
    // biome-ignore lint/suspicious/noExplicitAny: frames are inspected field by field
    data: (): any[] => headers.map((_, i) => JSON.parse(entry().frame(i)?.toString() ?? 'null')),
  };
}

const AT = Date.UTC(2026, 11, 4, 12, 0, 0);
const request = (sink: ReturnType<typeof recorder>['sink'], keyServices: string[] | null = ['shop']) =>
  new LiveRequest(sink, { route: '/v1/events/batch', requestId: 'r-1', keyId: 'k-1', keyServices, at: AT });

const stored: NormalisedEvent = {
  id: '00000000-0000-4000-8000-000000000001',
  service: 'shop',
  type: 'order "paid"',
  timestamp: '2026-12-04T12:00:00.000Z',
  receivedAt: '2026-12-04T12:00:00.000Z',
  userId: 'subject-1',
};

describe('live entries', () => {
  it('carry what requests share once, and give a reader each record’s frame and header', () => {
    const shop: RequestPart = { keyId: 'k', keyServices: ['s'], fields: '"at":"T","requestId":"r-1"' };
    const other: RequestPart = { keyId: null, keyServices: null, fields: '"at":"U","requestId":"r-2"' };
    const stored: StoredHeader[] = [
      ['accepted', 's', 't', 0, 0, 'id-0'],
      ['refused', null, null, 1, null, null],
      ['skipped', 's', 'ü', 0, 1, 'id-1'],
    ];
    const rests = ['{"e":"ü\\n"}', ',"code":"x"', ',"code":"user_opt_out"'];
    const entry = decodeEntry(
      '5-1',
      encodeEntry([shop, other], stored, rests.join('\n')).map((f) => Buffer.from(f)),
    );
    expect(entry?.headers).toEqual([
      ['accepted', 's', 't', 'k', ['s'], 1],
      ['refused', null, null, null, null, 1],
      ['skipped', 's', 'ü', 'k', ['s'], 1],
    ]);
    expect([0, 1, 2].map((i) => JSON.parse(entry?.frame(i)?.toString() ?? ''))).toEqual([
      {
        outcome: 'accepted',
        at: 'T',
        requestId: 'r-1',
        index: 0,
        id: 'id-0',
        service: 's',
        type: 't',
        event: { e: 'ü\n' },
      },
      {
        outcome: 'refused',
        at: 'U',
        requestId: 'r-2',
        index: null,
        id: null,
        service: null,
        type: null,
        code: 'x',
      },
      {
        outcome: 'skipped',
        at: 'T',
        requestId: 'r-1',
        index: 1,
        id: 'id-1',
        service: 's',
        type: 'ü',
        code: 'user_opt_out',
      },
    ]);
    expect(entry?.frame(3)).toBeUndefined();
    expect(decodeEntry('5-2', [Buffer.from('x'), Buffer.from('y')])).toBeUndefined();
    const broken = ['q', '[', 'r', '', 'h', '[]', 'd', ''].map((f) => Buffer.from(f));
    expect(decodeEntry('5-3', broken)).toBeUndefined();
  });

  it('ids order as Redis orders them, past what a double holds', () => {
    expect(compareIds('2-0', '10-0')).toBeLessThan(0);
    expect(compareIds('10-2', '10-10')).toBeLessThan(0);
    expect(compareIds('10-10', '10-10')).toBe(0);
    expect(compareIds('18446744073709551615-1', '18446744073709551614-9')).toBeGreaterThan(0);
    expect(compareIds('0-0', '1-0')).toBeLessThan(0);
  });

  it('a Last-Event-ID is ENTRY/INDEX as the API sent it, or nothing', () => {
    expect(parseLastEventId('1764885000000-0/3')).toEqual({ entry: '1764885000000-0', index: 3 });
    for (const bad of [undefined, '', '1764885000000-0', '1-0/x', 'a-b/1', '1-0/1/2', '1-0/-1'])
      expect(parseLastEventId(bad), String(bad)).toBeUndefined();
  });
});

describe('the live records of an ingest request', () => {
  it('accepted: the event JSON as the pipeline made it, nothing else built per record', () => {
    const r = recorder();
    const json = JSON.stringify({ ...stored, metadata: { sealed: 'enc:v1:…' } });
    request(r.sink).stored(2, 'accepted', stored, json);
    expect(r.rests).toEqual([json]);
    expect(r.headers()[0]).toEqual(['accepted', 'shop', 'order "paid"', 'k-1', ['shop'], 1]);
    expect(r.data()[0]).toEqual({
      outcome: 'accepted',
      at: '2026-12-04T12:00:00.000Z',
      route: '/v1/events/batch',
      requestId: 'r-1',
      keyId: 'k-1',
      index: 2,
      id: stored.id,
      service: 'shop',
      type: 'order "paid"',
      event: JSON.parse(json),
    });
  });

  it('skipped: no event and no subject', () => {
    const r = recorder();
    request(r.sink).skipped(0, stored);
    expect(r.data()[0]).toMatchObject({
      outcome: 'skipped',
      code: 'user_opt_out',
      id: stored.id,
      service: 'shop',
    });
    expect(JSON.stringify(r.data()[0])).not.toContain('subject-1');
    expect(r.data()[0]).not.toHaveProperty('event');
  });

  it('refused: code, message, details and the input as sent, numbers included', () => {
    const r = recorder();
    const input = parseJsonExact(
      '{"service":"shop","type":"t","id":"x","metadata":{"n":1e400,"m":0.1000000000000000000001}}',
    );
    request(r.sink).refused(
      1,
      { code: 'invalid_event', message: 'bad', details: [{ path: 'metadata.n', code: 'c', message: 'm' }] },
      input,
    );
    expect(r.rests[0]).toContain(
      '"input":{"service":"shop","type":"t","id":"x","metadata":{"n":1e400,"m":0.1000000000000000000001}}',
    );
    expect(r.data()[0]).toMatchObject({
      index: 1,
      id: 'x',
      service: 'shop',
      type: 't',
      code: 'invalid_event',
      message: 'bad',
      details: [{ path: 'metadata.n' }],
    });
  });

  it('refused without a service of its own: the sending key’s services in the header; a malformed one is none', () => {
    const r = recorder();
    const live = request(r.sink);
    live.refused(0, { code: 'invalid_event', message: 'bad' }, { type: 't' });
    live.refused(1, { code: 'invalid_event', message: 'bad' }, { service: 'no spaces', type: 't' });
    live.refused(2, { code: 'invalid_event', message: 'bad' }, 'not an object');
    expect(r.headers()).toEqual([
      ['refused', null, 't', 'k-1', ['shop'], 1],
      ['refused', null, 't', 'k-1', ['shop'], 1],
      ['refused', null, null, 'k-1', ['shop'], 1],
    ]);
    expect(r.data()[2].input).toBe('not an object');
  });

  it('an input over 8 KiB is left out and said so', () => {
    const r = recorder();
    const big = { service: 'shop', type: 't', message: 'é'.repeat(MAX_INPUT_BYTES / 2) };
    request(r.sink).refused(0, { code: 'invalid_event', message: 'bad' }, big);
    expect(r.data()[0]).toMatchObject({ service: 'shop', inputTruncated: true });
    expect(r.data()[0]).not.toHaveProperty('input');
  });

  it('a Segment call: the call as sent, named after the event it was mapped to, or the key’s service', () => {
    const r = recorder();
    const live = request(r.sink, ['web']);
    const calls = [
      { type: 'track', messageId: 'm-1' },
      { type: 'track', event: 'E', messageId: 'm-2' },
    ];
    live.sent = (i) => calls[i];
    live.service = 'web';
    live.refused(0, { code: 'invalid_event', message: 'needs an event name' });
    live.refused(1, { code: 'invalid_event', message: 'too old' }, { service: 'web', type: 'E', id: 'u-2' });
    expect(r.data().map((d) => [d.input, d.id, d.service, d.type])).toEqual([
      [calls[0], null, 'web', null],
      [calls[1], 'u-2', 'web', 'E'],
    ]);
  });

  it('a whole request refused: no index, its event count when known', () => {
    const r = recorder();
    const live = request(r.sink, null);
    live.refusedRequest({ code: 'backpressure', message: 'full' });
    live.count = 7;
    live.refusedRequest({ code: 'backpressure', message: 'full' });
    expect(r.headers()[0]).toEqual(['refused', null, null, 'k-1', null, 1]);
    expect(r.data()).toEqual([
      expect.objectContaining({ index: null, id: null, service: null, type: null, code: 'backpressure' }),
      expect.objectContaining({ count: 7 }),
    ]);
    expect(r.data()[0]).not.toHaveProperty('count');
    expect(live.published).toBe(true);
  });

  it('a batch in request order, whatever became of each event', () => {
    const r = recorder();
    const event = (n: number): NormalisedEvent => ({ ...stored, id: `id-${n}`, userId: undefined });
    request(r.sink).batch({
      inputs: [{ index: 1, value: { service: 'shop', type: 'bad' } }],
      rejected: [
        { index: 1, code: 'invalid_event', message: 'bad' },
        { index: 4, code: 'invalid_json', message: 'line' },
      ],
      skipped: [{ index: 3, event: event(3) }],
      valid: [
        { event: event(0), json: '{"n":0}' },
        { event: event(2), json: '{"n":2}' },
      ],
      validIndex: [0, 2],
      outcomes: ['accepted', 'duplicate'],
    });
    expect(r.data().map((d) => [d.index, d.outcome, d.event ?? d.input ?? null])).toEqual([
      [0, 'accepted', { n: 0 }],
      [1, 'refused', { service: 'shop', type: 'bad' }],
      [2, 'duplicate', { n: 2 }],
      [3, 'skipped', null],
      [4, 'refused', null],
    ]);
  });
});
