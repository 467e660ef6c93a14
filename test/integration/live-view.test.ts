import { randomUUID } from 'node:crypto';
import { describe, expect, onTestFinished } from 'vitest';
import { ADMIN_KEY } from '../helpers/env.ts';
import { stackTest } from '../helpers/fixtures.ts';
import { openLive, type SseClient, type SseFrame } from '../helpers/sse.ts';
import { call, event, type Stack, waitFor } from '../helpers/stack.ts';

/**
 * The live view (ARCHITECTURE §13, `GET /v1/events/live`) on one `serve` process: every
 * ingest outcome of the native and Segment routes as a frame, filters, the key's services,
 * heartbeats, stats, and resuming with Last-Event-ID. Other processes, sampling and
 * shutdown: live-processes.test.ts.
 */
const test = stackTest({ env: { LIVE_HEARTBEAT_S: '1' } });

async function keyFor(stack: Stack, scopes: string[], services?: string[]): Promise<string> {
  const res = await call(stack.url, '/v1/admin/keys', {
    body: { name: 'live', scopes, ...(services ? { services } : {}) },
  });
  expect(res.status).toBe(201);
  return res.body.key;
}

/** A listener, once its `ready` frame is in. */
async function listen(stack: Stack, opts: Parameters<typeof openLive>[1] = {}): Promise<SseClient> {
  const live = await openLive(stack.url, opts);
  onTestFinished(() => live.close());
  expect(live.status).toBe(200);
  await live.next((f) => f.event === 'ready');
  return live;
}

const outcomes = (live: SseClient, pred: (d: SseFrame['data']) => boolean = () => true) =>
  live.named('outcome').filter((f) => pred(f.data));
const tagged = (prefix: string) => (d: SseFrame['data']) => String(d.requestId).startsWith(prefix);

/** Outcome frames up to and including the one for `requestId` (a request sent last). */
async function until(live: SseClient, requestId: string): Promise<SseFrame['data'][]> {
  const last = await live.next((f) => f.event === 'outcome' && f.data.requestId === requestId);
  return live
    .named('outcome')
    .slice(0, live.named('outcome').indexOf(last) + 1)
    .map((f) => f.data);
}

describe('GET /v1/events/live', () => {
  test('starts with ready, then stats every second and a ping every LIVE_HEARTBEAT_S', async ({ stack }) => {
    const live = await openLive(stack.url, { query: 'service=hb-a,hb-b&service=hb-c&outcome=accepted' });
    expect(live.status).toBe(200);
    expect(live.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const ready = await live.next(() => true);
    expect(ready).toMatchObject({
      event: 'ready',
      data: {
        maxPerSecond: 50,
        heartbeatSeconds: 1,
        filters: { service: ['hb-a', 'hb-b', 'hb-c'], type: [], outcome: ['accepted'] },
        resumed: false,
      },
    });
    await live.collect(':', 2, (f) => f.comment === 'ping', 5_000);
    const [stats] = await live.collect('stats', 1);
    expect(stats?.data).toEqual({
      at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      accepted: 0,
      duplicate: 0,
      skipped: 0,
      refused: 0,
    });
    live.close();
  });

  test('refuses an unknown outcome or a malformed service with 400 invalid_query, and needs the read scope', async ({
    stack,
  }) => {
    for (const query of ['outcome=accepted,stored', 'service=no%20spaces']) {
      const refused = await openLive(stack.url, { query });
      expect(refused.status, query).toBe(400);
      expect(refused.body.error.code).toBe('invalid_query');
    }
    const ingestOnly = await openLive(stack.url, { key: await keyFor(stack, ['ingest']) });
    expect(ingestOnly.status).toBe(403);
    expect((await openLive(stack.url, { key: null })).status).toBe(401);
  });

  test('native routes: accepted, duplicate, skipped, refused with details and input, and whole requests refused', async ({
    stack,
  }) => {
    const S = 'lv-native';
    const live = await listen(stack);
    const send = (path: string, requestId: string, opts: Parameters<typeof call>[2]) =>
      call(stack.url, path, { ...opts, headers: { 'x-request-id': requestId, ...opts?.headers } });
    expect((await call(stack.url, '/v1/users/lv-opted/opt-out', { method: 'PUT' })).status).toBe(200);

    const id = randomUUID();
    expect(
      (await send('/v1/events', 'nat-1', { body: event({ id, service: S, type: 't.one' }) })).status,
    ).toBe(202);
    const dup = await send('/v1/events', 'nat-2', { body: event({ id, service: S, type: 't.one' }) });
    expect(dup.body.status).toBe('duplicate');
    const bad = { service: S, type: 't.bad', timestamp: 'yesterday', metadata: { n: 1 } };
    const batch = await send('/v1/events/batch', 'nat-3', {
      body: { events: [event({ service: S, type: 't.b' }), bad, event({ service: S, userId: 'lv-opted' })] },
    });
    expect(batch.body).toMatchObject({ accepted: 1, skipped: 1, rejected: [{ index: 1 }] });
    expect((await send('/v1/events', 'nat-4', { body: { service: S } })).status).toBe(400);
    expect((await send('/v1/events/batch', 'nat-5', { raw: '{"events": [' })).status).toBe(400);
    expect((await send('/v1/events', 'nat-6', { raw: 'x', contentType: 'text/plain' })).status).toBe(415);

    const frames = (await until(live, 'nat-6')).filter(tagged('nat-'));
    expect(frames.map((d) => [d.requestId, d.outcome, d.index])).toEqual([
      ['nat-1', 'accepted', 0],
      ['nat-2', 'duplicate', 0],
      ['nat-3', 'accepted', 0],
      ['nat-3', 'refused', 1],
      ['nat-3', 'skipped', 2],
      ['nat-4', 'refused', 0],
      ['nat-5', 'refused', null],
      ['nat-6', 'refused', null],
    ]);
    const [accepted, duplicate, batchAccepted, refused, skipped, single, notJson, unsupported] = frames;
    expect(accepted).toEqual({
      outcome: 'accepted',
      at: expect.any(String),
      route: '/v1/events',
      requestId: 'nat-1',
      keyId: 'admin-bootstrap',
      index: 0,
      id,
      service: S,
      type: 't.one',
      event: {
        id,
        service: S,
        type: 't.one',
        timestamp: expect.any(String),
        receivedAt: expect.any(String),
        keyId: 'admin-bootstrap',
      },
    });
    expect(duplicate).toMatchObject({ id, event: { id } });
    expect(batchAccepted).toMatchObject({ route: '/v1/events/batch', id: batch.body.ids[0] });
    expect(refused).toEqual({
      outcome: 'refused',
      at: expect.any(String),
      route: '/v1/events/batch',
      requestId: 'nat-3',
      keyId: 'admin-bootstrap',
      index: 1,
      id: null,
      service: S,
      type: 't.bad',
      code: 'invalid_event',
      message: 'the event is invalid',
      details: [expect.objectContaining({ path: 'timestamp', code: expect.any(String) })],
      input: bad,
    });
    // The subject opted out: no event, and its id nowhere in the frame.
    expect(skipped).toMatchObject({
      outcome: 'skipped',
      code: 'user_opt_out',
      service: S,
      type: 'order.placed',
    });
    expect(skipped).not.toHaveProperty('event');
    expect(JSON.stringify(skipped)).not.toContain('lv-opted');
    // One event refused on its own route: the event's frame, with its input, and no second one.
    expect(single).toMatchObject({ index: 0, code: 'invalid_event', input: { service: S } });
    expect(notJson).toMatchObject({ code: 'invalid_json', id: null, service: null, type: null });
    expect(notJson).not.toHaveProperty('count');
    expect(unsupported).toMatchObject({ code: 'unsupported_media_type', count: 1, route: '/v1/events' });
    // Every second's counts, once a second has ended after the last frame: each outcome once.
    const lastFrame = live.frames.findIndex((f) => f.data?.requestId === 'nat-6');
    await live.next((f) => f.event === 'stats', 5_000, lastFrame);
    const counted = { accepted: 0, duplicate: 0, skipped: 0, refused: 0 };
    for (const { data } of live.named('stats'))
      for (const k of Object.keys(counted) as (keyof typeof counted)[]) counted[k] += data[k];
    expect(counted).toEqual({ accepted: 2, duplicate: 1, skipped: 1, refused: 4 });
    live.close();
  });

  test('Segment routes: calls accepted and refused, the refused call as sent, under the key’s service', async ({
    stack,
  }) => {
    const S = 'lv-seg';
    const writeKey = await keyFor(stack, ['ingest'], [S]);
    const live = await listen(stack, { query: `service=${S}` });
    const ok = { type: 'track', event: 'Order Completed', messageId: randomUUID(), userId: 'u-1' };
    const noName = { type: 'track', messageId: 'm-2', properties: { total: 12.5 } };
    const tooOld = { type: 'page', messageId: 'm-3', timestamp: '2001-01-01T00:00:00Z' };
    const res = await call(stack.url, '/v1/batch', {
      key: null,
      body: { batch: [ok, noName, tooOld] },
      headers: {
        authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`,
        'x-request-id': 'seg-1',
      },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ accepted: 1, rejected: [{ index: 1 }, { index: 2 }] });
    const frames = (await live.collect('outcome', 3, (f) => f.data.requestId === 'seg-1')).map((f) => f.data);
    expect(frames.map((d) => [d.outcome, d.index, d.service, d.type])).toEqual([
      ['accepted', 0, S, 'Order Completed'],
      ['refused', 1, S, null],
      ['refused', 2, S, 'page'],
    ]);
    expect(frames[0]).toMatchObject({ route: '/v1/batch', id: ok.messageId, event: { userId: 'u-1' } });
    expect(frames[1]).toMatchObject({ code: 'invalid_event', input: noName, details: [{ path: 'event' }] });
    expect(frames[2]).toMatchObject({
      code: 'invalid_event',
      input: tooOld,
      details: [{ path: 'timestamp' }],
    });
    live.close();
  });

  test('filters by service, type and outcome, each repeated or comma-separated', async ({ stack }) => {
    const byService = await listen(stack, { query: 'service=lv-f1' });
    const byType = await listen(stack, { query: 'type=t.x,t.y&type=t.z' });
    const byOutcome = await listen(stack, { query: 'outcome=refused&outcome=duplicate' });
    const dupId = randomUUID();
    await call(stack.url, '/v1/events', { body: event({ id: dupId, service: 'lv-f2', type: 't.x' }) });
    await call(stack.url, '/v1/events/batch', {
      headers: { 'x-request-id': 'flt-1' },
      body: {
        events: [
          event({ service: 'lv-f1', type: 't.x' }),
          event({ service: 'lv-f2', type: 't.y' }),
          event({ service: 'lv-f2', type: 't.w' }),
          event({ id: dupId, service: 'lv-f2', type: 't.x' }),
          { service: 'lv-f2', type: 't.z', extra: true },
        ],
      },
    });
    // Matches all three: once it is in, everything before it is too.
    await call(stack.url, '/v1/events', {
      headers: { 'x-request-id': 'flt-end' },
      body: { service: 'lv-f1', type: 't.z', timestamp: 'never' },
    });
    const seen = async (live: SseClient) =>
      (await until(live, 'flt-end')).filter(tagged('flt-')).map((d) => `${d.service}/${d.type}/${d.outcome}`);
    expect(await seen(byService)).toEqual(['lv-f1/t.x/accepted', 'lv-f1/t.z/refused']);
    expect(await seen(byType)).toEqual([
      'lv-f1/t.x/accepted',
      'lv-f2/t.y/accepted',
      'lv-f2/t.x/duplicate',
      'lv-f2/t.z/refused',
      'lv-f1/t.z/refused',
    ]);
    expect(await seen(byOutcome)).toEqual(['lv-f2/t.x/duplicate', 'lv-f2/t.z/refused', 'lv-f1/t.z/refused']);
    for (const live of [byService, byType, byOutcome]) live.close();
  });

  test('a key bound to services sees their events, its teams’ malformed events, and what it sent itself', async ({
    stack,
  }) => {
    const [A, B] = ['lv-team-a', 'lv-team-b'];
    const readA = await keyFor(stack, ['read'], [A]);
    const ingestA = await keyFor(stack, ['ingest'], [A]);
    const ingestB = await keyFor(stack, ['ingest'], [B]);
    const bothA = await keyFor(stack, ['ingest', 'read'], [A]);
    const team = await listen(stack, { key: readA });
    const own = await listen(stack, { key: bothA });
    const all = await listen(stack);
    const send = (key: string, requestId: string, opts: Parameters<typeof call>[2]) =>
      call(stack.url, opts?.raw ? '/v1/events' : '/v1/events/batch', {
        key,
        ...opts,
        headers: { 'x-request-id': requestId },
      });
    await send(ingestA, 'sc-a', { body: { events: [event({ service: A })] } });
    await send(ingestB, 'sc-b', { body: { events: [event({ service: B })] } });
    // Malformed, no service: seen by the teams of the sending key.
    await send(ingestA, 'sc-a-bad', { body: { events: [{ type: 'no.service' }] } });
    await send(ingestB, 'sc-b-bad', { body: { events: [{ type: 'no.service' }] } });
    await send(ingestA, 'sc-a-415', { raw: 'x', contentType: 'text/plain' });
    // Bound to A, writing B: refused with service B, seen by the key that sent it.
    expect(
      (
        await call(stack.url, '/v1/events', {
          key: bothA,
          body: event({ service: B }),
          headers: { 'x-request-id': 'sc-own' },
        })
      ).status,
    ).toBe(403);
    await send(ADMIN_KEY, 'sc-end', { body: { events: [event({ service: A })] } });

    const seen = async (live: SseClient) =>
      (await until(live, 'sc-end')).filter(tagged('sc-')).map((d) => d.requestId);
    expect(await seen(team)).toEqual(['sc-a', 'sc-a-bad', 'sc-a-415', 'sc-end']);
    expect(await seen(own)).toEqual(['sc-a', 'sc-a-bad', 'sc-a-415', 'sc-own', 'sc-end']);
    expect(await seen(all)).toEqual(['sc-a', 'sc-b', 'sc-a-bad', 'sc-b-bad', 'sc-a-415', 'sc-own', 'sc-end']);
    const ownFrame = outcomes(own, (d) => d.requestId === 'sc-own')[0]?.data;
    expect(ownFrame).toMatchObject({ service: B, code: 'service_not_allowed', input: { service: B } });
    // A bound key's filter for another service finds nothing of it.
    const elsewhere = await listen(stack, { key: readA, query: `service=${B}` });
    await send(ingestB, 'sc-b-2', { body: { events: [event({ service: B })] } });
    await send(ADMIN_KEY, 'sc-end-2', { body: { events: [event({ service: B }), event({ service: A })] } });
    await team.next((f) => f.data?.requestId === 'sc-end-2');
    expect(outcomes(elsewhere, tagged('sc-'))).toEqual([]);
    for (const live of [team, own, all, elsewhere]) live.close();
  });

  test('resumes after Last-Event-ID without loss or repeat, also in the middle of an entry', async ({
    stack,
  }) => {
    const S = 'lv-resume';
    const first = await listen(stack, { query: `service=${S}` });
    const batchOf = (n: number, tag: string) => ({
      events: Array.from({ length: n }, (_, i) => event({ service: S, type: `${tag}.${i}` })),
    });
    await call(stack.url, '/v1/events/batch', { body: batchOf(5, 'a') });
    const received = await first.collect('outcome', 5);
    first.close();
    // The five records went out in one flush: one entry, indices 0..4.
    const ids = received.map((f) => f.id ?? '');
    expect(new Set(ids.map((id) => id.split('/')[0])).size).toBe(1);
    expect(ids.map((id) => id.split('/')[1])).toEqual(['0', '1', '2', '3', '4']);

    await call(stack.url, '/v1/events/batch', { body: batchOf(3, 'b') });
    const resumed = await listen(stack, { query: `service=${S}`, lastEventId: ids[1] });
    expect(resumed.frames[0]?.data.resumed).toBe(true);
    await call(stack.url, '/v1/events/batch', { body: batchOf(1, 'c') });
    const replayed = await resumed.collect('outcome', 7);
    expect(replayed.map((f) => f.data.type)).toEqual(['a.2', 'a.3', 'a.4', 'b.0', 'b.1', 'b.2', 'c.0']);
    expect(replayed.slice(0, 3).map((f) => f.id)).toEqual(ids.slice(2));
    // Replayed seconds are past: not counted in this second's stats.
    expect(resumed.named('gap')).toEqual([]);
    resumed.close();
  });

  test('an expired Last-Event-ID gets a gap frame, then everything kept from the oldest entry', async ({
    stack,
  }) => {
    const live = await listen(stack, { query: 'service=lv-resume', lastEventId: '1-0/0' });
    const gap = await live.next((f) => f.event === 'gap');
    expect(gap.data).toEqual({ lastEventId: '1-0/0', reason: 'expired' });
    expect(live.frames.indexOf(gap)).toBe(1);
    // The previous test's nine events are all still kept.
    const replayed = await live.collect('outcome', 9);
    expect(replayed.map((f) => f.data.type)).toEqual([
      'a.0',
      'a.1',
      'a.2',
      'a.3',
      'a.4',
      'b.0',
      'b.1',
      'b.2',
      'c.0',
    ]);
    live.close();
  });

  test('a closed connection is forgotten: listeners gauge back to 0, a log line with why', async ({
    stack,
  }) => {
    const live = await listen(stack);
    live.close();
    await stack.api.waitForLog((l) => l.msg === 'live listener closed' && l.reason === 'client_gone');
    const metrics = async () => (await call(stack.url, '/metrics')).body as string;
    await waitFor(
      async () => /^tributary_live_listeners 0$/m.test(await metrics()),
      5_000,
      'no listener',
    ).catch(async (e) => {
      console.log((await metrics()).split('\n').filter((l) => l.includes('live')));

      throw e;
    });
    // The access line is written when the stream opens: 200, and the time to open it.
    const access = stack.api.logs.filter((l) => l.msg === 'request' && l.route === '/v1/events/live');
    expect(access.some((l) => l.status === 200)).toBe(true);
  });
});
