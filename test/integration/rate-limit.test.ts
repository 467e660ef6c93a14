import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY } from '../helpers/env.ts';
import { call, event, type Stack, startStack, waitFor } from '../helpers/stack.ts';
import { sleep } from '../helpers/wait.ts';

let stack: Stack;
const created: string[] = [];
const clients: ChildProcess[] = [];
beforeAll(async () => {
  stack = await startStack({ env: { LOG_LEVEL: process.env.RL_LOG ?? 'info' } });
});
afterAll(async () => {
  for (const child of clients) child.kill();
  await stack?.close();
});

async function createKey(body: Record<string, unknown>): Promise<{ id: string; key: string }> {
  const res = await call(stack.url, '/v1/admin/keys', { body: { scopes: ['ingest', 'read'], ...body } });
  expect(res.status).toBe(201);
  created.push(res.body.key);
  return res.body;
}

/**
 * The clients, each in a process of its own, so neither delays the other's event loop nor
 * shares one with this test's reading of the API's logs. `flood` sends RATE requests a
 * second (at most IN_FLIGHT at a time) while told to; `measure N` sends N requests one
 * after another on one kept-alive connection and answers with their statuses and times.
 */
const CLIENT = `
import { Agent, request } from 'node:http';
const [role, url, key, rate, inFlight] = process.argv.slice(1);
const body = () => JSON.stringify({ id: crypto.randomUUID(), service: role, type: 'load' });
const headerNames = ['retry-after', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'];
const agent = new Agent({ keepAlive: true, maxSockets: Number(inFlight) });
function post() {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const req = request(url + '/v1/events', { method: 'POST', agent, headers: { 'content-type': 'application/json', 'x-api-key': key } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, ms: performance.now() - start, headers: Object.fromEntries(headerNames.map((h) => [h, res.headers[h] ?? null])) }));
    });
    req.on('error', reject);
    req.end(body());
  });
}
const stats = { sent: 0, ok: 0, limited: 0, other: 0, badHeaders: [], first429: null, floodMs: 0 };
let onSince = 0;
let on = false;
let next = 0;
async function flood() {
  while (on) {
    const wait = next - performance.now();
    next = Math.max(next, performance.now()) + 1000 / Number(rate);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    stats.sent++;
    const { status, headers: h } = await post();
    if (status === 429) {
      stats.limited++;
      stats.first429 ??= h;
      if (!(Number(h['retry-after']) >= 1) || h['ratelimit-limit'] !== '600' || h['ratelimit-remaining'] !== '0') stats.badHeaders.push(h);
    } else if (status === 202) {
      stats.ok++;
      if (h['ratelimit-limit'] !== '600' || h['ratelimit-remaining'] === null) stats.badHeaders.push(h);
    } else stats.other++;
  }
}
process.on('message', async (m) => {
  if (m === 'flood' && !on) {
    on = true;
    onSince = performance.now();
    next = performance.now();
    for (let i = 0; i < Number(inFlight); i++) flood();
  }
  if (m === 'pause' && on) {
    on = false;
    stats.floodMs += performance.now() - onSince;
  }
  if (m === 'report') process.send(stats);
  if (typeof m === 'number') {
    const statuses = [];
    const ms = [];
    for (let i = 0; i < m; i++) {
      const r = await post();
      statuses.push(r.status);
      ms.push(r.ms);
    }
    process.send({ statuses, ms });
  }
  if (m === 'exit') process.exit(0);
});
process.send('ready');
`;

interface Client {
  ask<T>(message: string | number): Promise<T>;
  send(message: string): void;
}

async function startClient(role: string, key: string, rate = 0, inFlight = 1): Promise<Client> {
  const args = ['--input-type=module', '-e', CLIENT, role, stack.url, key, String(rate), String(inFlight)];
  // The flooding client would be another machine; here it gives way when the cores are
  // contended, so what the quiet key feels is the API's work for the flood, not the client's.
  const child =
    role === 'flood'
      ? spawn('nice', ['-n', '19', process.execPath, ...args], {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        })
      : spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  clients.push(child);
  await once(child, 'message');
  return {
    async ask<T>(message: string | number) {
      const reply = once(child, 'message');
      child.send(message);
      return (await reply)[0] as T;
    },
    send: (message) => child.send(message),
  };
}

/** The q-quantile of `samples` (nearest rank), rounded to µs. */
function quantile(samples: number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return Math.round((sorted[Math.ceil(sorted.length * q) - 1] ?? Number.NaN) * 1000) / 1000;
}

describe('per-key rate limit', () => {
  it('refuses a flooding key with 429 and its headers while another key is served as fast as before', async () => {
    const noisy = await createKey({ name: 'noisy', rateLimitPerMinute: 600 });
    const quiet = await createKey({ name: 'quiet', rateLimitPerMinute: 10_000_000 });
    const flood = await startClient('flood', noisy.key, Number(process.env.RL_RATE ?? 1_000), 4);
    const measurer = await startClient('measure', quiet.key);
    const statuses: number[] = [];
    const measure = async (n: number, into: number[]) => {
      const r = await measurer.ask<{ statuses: number[]; ms: number[] }>(n);
      statuses.push(...r.statuses);
      into.push(...r.ms);
    };
    await measure(300, []); // warm-up: JIT, connection, key cache

    // Many short alternating rounds: other processes on this shared machine come and go
    // within seconds, and short rounds let such a stretch hit both sides alike.
    const attempt = async () => {
      const alone: number[] = [];
      const flooded: number[] = [];
      for (let round = 0; round < 24; round++) {
        // Pauses that pace the rounds (the flood starts and stops), not waits for a condition.
        await measure(60, alone);
        flood.send('flood');
        await sleep(30);
        await measure(60, flooded);
        flood.send('pause');
        await sleep(20);
      }
      const [aloneP99, floodedP99] = [quantile(alone, 0.99), quantile(flooded, 0.99)];
      return {
        aloneP50: quantile(alone, 0.5),
        floodedP50: quantile(flooded, 0.5),
        aloneP99,
        floodedP99,
        // Within 10 % of the p99 alone, plus 2 ms: the API, Redis, both clients and other
        // test runs share two cores here, and the 15 slowest of 1440 samples (the p99) land
        // on scheduler and GC pauses that move a ~1 ms p99 by more than 10 % either way.
        within: floodedP99 <= aloneP99 * 1.1 + 2,
      };
    };
    const started = performance.now();
    // First spend the noisy key's burst (600 at once), so the flood measured is refused.
    flood.send('flood');
    await waitFor(async () => (await flood.ask<{ limited: number }>('report')).limited > 0, 10_000, 'a 429');
    flood.send('pause');
    // Up to three attempts, for a busy machine: a real interference (a lock, a slow path
    // for refused requests) shows in every one.
    const attempts = [await attempt()];
    while (!attempts.at(-1)?.within && attempts.length < 3) attempts.push(await attempt());
    const floodSeconds = (performance.now() - started) / 1000;
    const stats = await flood.ask<{
      sent: number;
      ok: number;
      limited: number;
      other: number;
      badHeaders: unknown[];
      first429: Record<string, string>;
      floodMs: number;
    }>('report');
    flood.send('exit');
    measurer.send('exit');
    console.log(
      'quiet key latency (ms), alone vs while another key floods:',
      JSON.stringify({
        attempts,
        floodSent: stats.sent,
        floodAccepted: stats.ok,
        floodRefused: stats.limited,
        floodPerSecond: Math.round(stats.sent / (stats.floodMs / 1000)),
      }),
    );

    expect(statuses.every((s) => s === 202)).toBe(true);
    expect(stats.other).toBe(0);
    expect(stats.badHeaders).toEqual([]);
    // The burst of 600, then 10 a second: never more over the whole run.
    expect(stats.ok).toBeGreaterThanOrEqual(600);
    expect(stats.ok).toBeLessThanOrEqual(600 + Math.ceil(floodSeconds * 10) + 1);
    expect(stats.limited).toBeGreaterThan(500);
    expect(Number(stats.first429['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(stats.first429['ratelimit-reset'])).toBeLessThanOrEqual(60);
    expect(attempts.at(-1)).toMatchObject({ within: true });
  }, 180_000);

  it('answers a limited key’s 2xx with the headers, and leaves unlimited keys without them', async () => {
    const limited = await createKey({ name: 'headers', rateLimitPerMinute: 120 });
    const first = await call(stack.url, '/v1/events?limit=1', { key: limited.key });
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-limit')).toBe('120');
    expect(first.headers.get('ratelimit-remaining')).toBe('119');
    expect(first.headers.get('ratelimit-reset')).toBe('1');
    // A batch spends one per event.
    const batch = await call(stack.url, '/v1/events/batch', {
      key: limited.key,
      body: { events: [event(), event(), event()] },
    });
    expect(batch.status).toBe(202);
    expect(batch.headers.get('ratelimit-remaining')).toBe('116');
    const unlimited = await call(stack.url, '/v1/events?limit=1', { key: ADMIN_KEY });
    expect(unlimited.headers.get('ratelimit-limit')).toBeNull();
  });

  it('never logs a key', () => {
    const logs = JSON.stringify(stack.api.logs);
    for (const key of [ADMIN_KEY, ...created]) expect(logs).not.toContain(key.slice(8));
  });
});
