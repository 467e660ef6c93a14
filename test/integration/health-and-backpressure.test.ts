import { afterAll, describe, expect, it } from 'vitest';
import { createTestEnv } from '../helpers/env.ts';
import { documentedFetch } from '../helpers/openapi.ts';
import { freePort, PrivateRedis } from '../helpers/private-servers.ts';
import { runTributary, startTributary, type TributaryProcess } from '../helpers/processes.ts';
import { call, event, waitFor } from '../helpers/stack.ts';

const env = createTestEnv();
const processes: TributaryProcess[] = [];
let redis: PrivateRedis | undefined;

afterAll(async () => {
  await Promise.all(processes.map((p) => p.kill9()));
  redis?.destroy();
  await env.cleanup();
});

describe('health', () => {
  it('reports live, ready, buffer, database and the whole picture', async () => {
    expect((await runTributary(['migrate'], env.env())).code).toBe(0);
    const api = await startTributary('serve', env.env());
    processes.push(api);
    const noWorkers = await call(api.url, '/health');
    expect(noWorkers.body).toMatchObject({ status: 'degraded', circuitBreaker: 'no workers' });
    const worker = await startTributary('work', env.env());
    processes.push(worker);
    expect((await call(api.url, '/health/live', { key: null })).body).toEqual({ status: 'ok' });
    const ready = await call(api.url, '/health/ready', { key: null });
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ok' });
    const buffer = await call(api.url, '/health/buffer');
    expect(buffer.body).toMatchObject({
      length: 0,
      pending: 0,
      deadLetters: 0,
      backpressure: false,
      maxEvents: 1_000_000,
    });
    expect(buffer.body.partitions).toHaveLength(8);
    const db = await waitFor(async () => {
      const res = await call(api.url, '/health/database');
      return res.body.workers?.length === 1 ? res : null;
    });
    expect(db.status).toBe(200);
    expect(db.body).toMatchObject({
      status: 'up',
      circuitBreaker: 'closed',
      checkpoint: { events: 0, segments: 0, failed: [] },
    });
    const all = await call(api.url, '/health');
    expect(all.body.status).toBe('ok');
    await worker.stop();
    const metrics = await documentedFetch(`${api.url}/metrics`).then((r) => r.text());
    expect(metrics).toContain('tributary_http_request_duration_seconds');
    expect(metrics).toContain('tributary_events_received_total');
    await api.stop();
  });
});

describe('backpressure', () => {
  it('answers 429 backpressure with Retry-After once the buffer is over BUFFER_MAX_EVENTS, and recovers when drained', async () => {
    const api = await startTributary('serve', env.env({ BUFFER_MAX_EVENTS: '50' }));
    processes.push(api);
    const first = await call(api.url, '/v1/events/batch', {
      body: { events: Array.from({ length: 60 }, () => event()) },
    });
    expect(first.body.accepted).toBe(60);
    const refused = await waitFor(async () => {
      const res = await call(api.url, '/v1/events', { body: event() });
      return res.status === 429 ? res : null;
    }, 5_000);
    expect(refused.body.error.code).toBe('backpressure');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    const full = (await call(api.url, '/health/buffer')).body;
    expect(full.backpressure).toBe(true);
    // The same picture on /metrics: one length per partition, summing to what is buffered
    // (the 60, and the single events accepted before the flag was refreshed).
    const scraped = await documentedFetch(`${api.url}/metrics`).then((r) => r.text());
    const lengths = [...scraped.matchAll(/^tributary_buffer_length\{partition="(\d+)"\} (\d+)$/gm)];
    expect(lengths).toHaveLength(8);
    expect(lengths.reduce((a, m) => a + Number(m[2]), 0)).toBe(full.length);
    expect(scraped).toMatch(/^tributary_backpressure_active 1$/m);
    expect(scraped).toContain(`tributary_buffer_utilisation_ratio ${full.length / 50}\n`);
    expect(scraped).toMatch(/^tributary_dead_letters 0$/m);
    expect(scraped).toMatch(/^# HELP tributary_buffer_lag /m);

    const worker = await startTributary('work', env.env());
    processes.push(worker);
    await waitFor(async () => (await call(api.url, '/v1/events', { body: event() })).status === 202, 15_000);
    await worker.stop();
    await api.stop();
  });
});

describe('Redis unreachable', () => {
  it('answers 503 with Retry-After, never 202, and recovers by itself when Redis returns', async () => {
    redis = new PrivateRedis(await freePort());
    redis.start();
    const api = await startTributary('serve', env.env({ REDIS_URL: redis.url }));
    processes.push(api);
    expect((await call(api.url, '/v1/events', { body: event() })).status).toBe(202);

    redis.stop();
    const down = await waitFor(async () => {
      const res = await call(api.url, '/v1/events', { body: event() });
      expect(res.status).not.toBe(202);
      return res.status === 503 ? res : null;
    }, 5_000);
    expect(down.body.error.code).toBe('buffer_unavailable');
    expect(down.headers.get('retry-after')).toBe('1');
    for (let i = 0; i < 5; i++)
      expect((await call(api.url, '/v1/events', { body: event() })).status).toBe(503);
    expect((await call(api.url, '/health/ready', { key: null })).status).toBe(503);

    redis.start();
    const accepted = await waitFor(async () => {
      const res = await call(api.url, '/v1/events', { body: event() });
      return res.status === 202 ? res : null;
    }, 15_000);
    expect(accepted.body.status).toBe('accepted');
    expect((await call(api.url, '/health/ready', { key: null })).status).toBe(200);
  });
});
