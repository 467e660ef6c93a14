import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from '../helpers/env.ts';
import { runTributary, startTributary, type TributaryProcess } from '../helpers/processes.ts';
import { call, event, waitFor } from '../helpers/stack.ts';

/** A span as OTLP/HTTP JSON carries it. */
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  links?: { traceId: string; spanId: string }[];
}

// An in-memory OTLP/HTTP receiver: both processes export their spans to it.
const spans: OtlpSpan[] = [];
let receiver: Server;
let env: TestEnv;
let api: TributaryProcess;
let worker: TributaryProcess;

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      const parsed = JSON.parse(body) as { resourceSpans?: { scopeSpans?: { spans?: OtlpSpan[] }[] }[] };
      for (const rs of parsed.resourceSpans ?? [])
        for (const ss of rs.scopeSpans ?? []) spans.push(...(ss.spans ?? []));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  }).listen(0, '127.0.0.1');
  await once(receiver, 'listening');
  const address = receiver.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  env = createTestEnv();
  const otel = {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_BSP_SCHEDULE_DELAY: '100',
  };
  expect((await runTributary(['migrate'], env.env())).code).toBe(0);
  api = await startTributary('serve', env.env(otel));
  worker = await startTributary('work', env.env(otel));
});
afterAll(async () => {
  await Promise.all([api, worker].map((p) => p?.kill9()));
  await env?.cleanup();
  receiver?.close();
});

const SERVER = 2;
const CLIENT = 3;
const PRODUCER = 4;
const CONSUMER = 5;

describe('tracing', () => {
  it('follows one event from the HTTP request through XADD to the worker batch and its insert', async () => {
    const traceId = randomBytes(16).toString('hex');
    const callerSpan = randomBytes(8).toString('hex');
    const sent = event();
    const res = await call(api.url, '/v1/events', {
      body: sent,
      headers: { traceparent: `00-${traceId}-${callerSpan}-01` },
    });
    expect(res.status).toBe(202);

    const find = (pred: (s: OtlpSpan) => boolean) => spans.find(pred);
    const http = await waitFor(
      async () => find((s) => s.name === 'POST /v1/events' && s.traceId === traceId),
      20_000,
      'the HTTP span',
    );
    expect(http.kind).toBe(SERVER);
    expect(http.parentSpanId).toBe(callerSpan); // the caller's trace is continued
    const enqueue = await waitFor(async () =>
      find((s) => s.name === 'tributary.enqueue' && s.parentSpanId === http.spanId),
    );
    expect(enqueue.kind).toBe(PRODUCER);
    expect(find((s) => s.name === 'tributary.validate' && s.parentSpanId === http.spanId)).toBeDefined();

    const batch = await waitFor(
      async () =>
        find(
          (s) =>
            s.name === 'tributary.batch' &&
            (s.links ?? []).some((l) => l.traceId === traceId && l.spanId === enqueue.spanId),
        ),
      20_000,
      'a worker batch span linked to the XADD span',
    );
    expect(batch.kind).toBe(CONSUMER);
    const insert = await waitFor(async () =>
      find((s) => s.name === 'tributary.insert' && s.parentSpanId === batch.spanId),
    );
    expect(insert.kind).toBe(CLIENT);
    expect(insert.traceId).toBe(batch.traceId);
    expect(find((s) => s.name === 'tributary.ack' && s.parentSpanId === batch.spanId)).toBeDefined();

    // Log lines carry the trace id: the API's access line and the worker's batch line.
    const access = await api.waitForLog((l) => l.msg === 'request' && l.route === '/v1/events');
    expect(access.traceId).toBe(traceId);
    const batchLine = await worker.waitForLog((l) => l.msg === 'batch' && l.traceId === batch.traceId);
    expect(batchLine.inserted).toBeGreaterThanOrEqual(1);
    const stored = await env.pool.query('SELECT 1 FROM events WHERE id = $1', [sent.id]);
    expect(stored.rowCount).toBe(1);
  });
});
