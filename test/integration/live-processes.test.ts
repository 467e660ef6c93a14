import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createTestEnv, type TestEnv } from '../helpers/env.ts';
import { postOnNewConnection } from '../helpers/fresh-connection.ts';
import { runTributary, type TributaryProcess } from '../helpers/processes.ts';
import { openLive, type SseClient } from '../helpers/sse.ts';
import { call, event, sleep, waitFor } from '../helpers/stack.ts';

/**
 * The live view across API processes (ARCHITECTURE §13): `serve` with API_PROCESSES=2 and a
 * second `serve` on the same Redis prefix; a listener on any of them sees what the others
 * ingest, is sampled above LIVE_MAX_EVENTS_PER_S with its stats still counting everything,
 * ingest publishes nothing once nobody listens, and an open stream does not hold up shutdown.
 */
let env: TestEnv;
/** Two API processes behind one port. */
let pair: TributaryProcess;
/** One more API process, sampling above 5 outcome frames a second. */
let sampled: TributaryProcess;
const MAX_PER_S = 5;

beforeAll(async () => {
  env = createTestEnv({ settings: { LIVE_HEARTBEAT_S: '1' } });
  const migrated = await runTributary(['migrate'], env.env());
  expect(migrated.code).toBe(0);
  // Started through the env, which kills them at cleanup.
  pair = await env.start('serve', { API_PROCESSES: '2' });
  sampled = await env.start('serve', { LIVE_MAX_EVENTS_PER_S: String(MAX_PER_S) });
  await waitFor(
    async () => pair.logs.filter((l) => l.msg === 'listening').length === 2,
    20_000,
    'both processes listening',
  );
});
afterAll(async () => {
  // SIGTERM first: the primary stops its API processes, which a SIGKILL would leave running.
  await pair?.stop();
  await env?.cleanup();
});

async function listen(url: string, query = ''): Promise<SseClient> {
  const live = await openLive(url, { query });
  onTestFinished(() => live.close());
  expect(live.status).toBe(200);
  await live.next((f) => f.event === 'ready');
  return live;
}

/** The pid of the API process that answered a request, from its access line. */
const pidOf = (requestId: string) =>
  pair.logs.find((l) => l.msg === 'request' && l.requestId === requestId)?.pid as number | undefined;

/**
 * Sends probes on fresh connections (so both processes of `pair` get some) until `live` has
 * seen one answered by each process: from then on both know someone listens.
 */
async function untilBothPublish(live: SseClient, service: string): Promise<void> {
  const seen = new Set<number>();
  await waitFor(
    async () => {
      const requestId = `probe-${randomUUID()}`;
      await postOnNewConnection(`${pair.url}/v1/events`, event({ service }), { 'x-request-id': requestId });
      const frame = await live.next((f) => f.data?.requestId === requestId, 1_000).catch(() => undefined);
      const pid = frame ? pidOf(requestId) : undefined;
      if (pid !== undefined) seen.add(pid);
      return seen.size === 2;
    },
    20_000,
    'outcomes published by both processes',
    0,
  );
}

describe('the live view across API processes', () => {
  it('a listener on one process sees what every process ingests', async () => {
    const onPair = await listen(pair.url, 'service=lp-cross,lp-probe-a');
    const onOther = await listen(sampled.url, 'service=lp-cross');
    await untilBothPublish(onPair, 'lp-probe-a');
    const ids: string[] = [];
    const requestIds: string[] = [];
    for (let i = 0; i < 10; i++) {
      const e = event({ service: 'lp-cross' });
      ids.push(String(e.id));
      requestIds.push(`cross-${i}`);
      expect(await postOnNewConnection(`${pair.url}/v1/events`, e, { 'x-request-id': `cross-${i}` })).toBe(
        202,
      );
    }
    const viaOther = await call(sampled.url, '/v1/events', { body: event({ service: 'lp-cross' }) });
    ids.push(viaOther.body.id);
    const frames = await onPair.collect('outcome', 11, (f) => f.data.service === 'lp-cross');
    expect(frames.map((f) => f.data.id).sort()).toEqual([...ids].sort());
    // The other process samples above 5 a second, but counts every one of them.
    const counted = () => onOther.named('stats').reduce((n, f) => n + f.data.accepted, 0);
    await waitFor(async () => counted() === 11, 5_000, 'all eleven counted');
    expect(onOther.named('outcome').length).toBeGreaterThan(0);
    for (const f of onOther.named('outcome')) expect(ids).toContain(f.data.id);
    // The ten went to both processes of the pair.
    expect(new Set(requestIds.map(pidOf)).size).toBe(2);
  });

  it(`samples above LIVE_MAX_EVENTS_PER_S (${MAX_PER_S}) at a stated rate, its stats counting every outcome`, async () => {
    const live = await listen(sampled.url, 'service=lp-sampled');
    const probe = await listen(pair.url, 'service=lp-probe-b');
    await untilBothPublish(probe, 'lp-probe-b');
    // 200 events over about two seconds, from both processes of the pair: the pacing is the scenario.
    for (let i = 0; i < 20; i++) {
      await postOnNewConnection(`${pair.url}/v1/events/batch`, {
        events: Array.from({ length: 10 }, () => event({ service: 'lp-sampled' })),
      });
      await sleep(100);
    }
    const total = () => live.named('stats').reduce((n, f) => n + f.data.accepted, 0);
    await waitFor(async () => total() === 200, 10_000, 'stats counting all 200');
    const sampling = live.named('sampling');
    expect(sampling[0]?.data).toMatchObject({ maxPerSecond: MAX_PER_S, rate: expect.any(Number) });
    expect(sampling[0]?.data.rate).toBeLessThan(1);
    expect(sampling[0]?.data.matchingPerSecond).toBeGreaterThan(MAX_PER_S);
    // No more than the maximum in any one second (the frames between two stats frames).
    let inSecond = 0;
    for (const f of live.frames) {
      if (f.event === 'stats') inSecond = 0;
      else if (f.event === 'outcome') expect(++inSecond).toBeLessThanOrEqual(MAX_PER_S);
    }
    const sent = live.named('outcome').length;
    expect(sent).toBeGreaterThanOrEqual(MAX_PER_S);
    expect(sent).toBeLessThan(200);
    // Once the burst is over it says so.
    const stopped = await live.next((f) => f.event === 'sampling' && f.data.rate === 1, 5_000);
    expect(stopped.data).toMatchObject({ rate: 1, maxPerSecond: MAX_PER_S });
  });

  it('ships the bodies of only so many busy records a second, and every rare one', async () => {
    const all = await listen(sampled.url, 'service=lp-busy');
    const refusals = await listen(sampled.url, 'service=lp-busy&outcome=refused');
    // One request: 300 accepted events of one type, one refusal in the middle.
    const events: unknown[] = Array.from({ length: 300 }, () => event({ service: 'lp-busy', type: 'tick' }));
    events.splice(150, 0, { service: 'lp-busy', type: 'tick', timestamp: 'yesterday' });
    const answer = await call(sampled.url, '/v1/events/batch', { body: { events } });
    expect(answer.body).toMatchObject({ accepted: 300, rejected: [{ index: 150 }] });
    const refused = await refusals.next((f) => f.event === 'outcome');
    expect(refused.data).toMatchObject({ outcome: 'refused', index: 150, code: 'invalid_event' });
    const counted = () => all.named('stats').reduce((n, f) => n + f.data.accepted, 0);
    await waitFor(async () => counted() === 300, 5_000, 'stats counting all 300');
    // Twice LIVE_MAX_EVENTS_PER_S bodies of that type a second left the API (the request may
    // straddle two seconds): the listener sent no more.
    const budget = 2 * (2 * MAX_PER_S);
    const sent = all.named('outcome').filter((f) => f.data.outcome === 'accepted');
    expect(sent.length).toBeGreaterThan(0);
    expect(sent.length).toBeLessThanOrEqual(budget);
    const published = await env.redis.xrange(`${env.prefix}:live`, '-', '+');
    const bodies = published
      .flatMap(([, fields]) => (fields[fields.indexOf('d') + 1] ?? '').split('\n'))
      .filter((line) => line.includes('"type":"tick"'));
    expect(bodies.length).toBeLessThanOrEqual(budget + 1); // and the refusal's input
  });

  it('publishes nothing once nobody listens', async () => {
    const listeners = `${env.prefix}:live:listeners`;
    await waitFor(
      async () => (await env.redis.zcount(listeners, Date.now(), '+inf')) === 0,
      15_000,
      'no listener',
    );
    const last = async () => (await env.redis.xrevrange(`${env.prefix}:live`, '+', '-', 'COUNT', 1))[0]?.[0];
    const sendSome = async (n: number) => {
      for (let i = 0; i < n; i++) {
        await postOnNewConnection(`${pair.url}/v1/events`, event({ service: 'lp-quiet' }));
        await call(sampled.url, '/v1/events', { body: event({ service: 'lp-quiet' }) });
      }
      // Longer than a flush takes: a record published would be in the stream by now.
      await sleep(400);
    };
    // Every process polls the listeners every 250 ms: wait until none publishes.
    await waitFor(
      async () => {
        const before = await last();
        await sendSome(2);
        return (await last()) === before;
      },
      10_000,
      'ingest to stop publishing',
      0,
    );
    const before = await last();
    await sendSome(25);
    expect(await last()).toBe(before);
  });

  it('ends open streams at shutdown, which does not wait for them', async () => {
    const live = await listen(sampled.url);
    const asked = Date.now();
    expect(await sampled.stop()).toBe(0);
    expect(Date.now() - asked).toBeLessThan(5_000);
    await live.ended;
    expect(sampled.logs.some((l) => l.msg === 'live listener closed' && l.reason === 'shutdown')).toBe(true);
  });
});
