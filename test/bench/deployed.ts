/**
 * Tributary as it is deployed, which is how the bench measures it: load presented with a
 * stored ingest key that has a rate limit and is bound to the services the load sends (so
 * every request pays the rate-limit call and every event the service check), logs at info
 * written to a file, metrics on, the live view on with nobody listening. Tracing is off
 * (no OTLP endpoint), except on the `*-traced` server, which samples 1 % of requests and
 * exports them to a local OTLP sink.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import { ADMIN_KEY } from '../helpers/env.ts';
import type { ServerChild } from './children.ts';

/** The services test/bench/wrk/ingest.lua sends (native formats), and the Segment write key's. */
export const WRK_SERVICES = ['checkout', 'billing', 'search', 'accounts', 'catalog', 'web-shop'];

/**
 * The deployed key's limit, events per minute: the largest a key may have (10,000,000, about
 * 166k events/s), above every rate the bench reaches, so it is counted and never refuses.
 */
export const DEPLOYED_RATE_LIMIT = 10_000_000;

/** The fraction of requests the traced server samples (OTEL_TRACES_SAMPLER_ARG). */
export const TRACE_SAMPLE_RATIO = 0.01;

/**
 * A stored key with the ingest scope, bound to `services`, limited to DEPLOYED_RATE_LIMIT
 * events a minute, made through the admin API as an operator would.
 */
export async function createIngestKey(
  server: ServerChild,
  name: string,
  services: string[],
): Promise<string> {
  const res = await fetch(`${server.url}/v1/admin/keys`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': ADMIN_KEY },
    body: JSON.stringify({ name, scopes: ['ingest'], services, rateLimitPerMinute: DEPLOYED_RATE_LIMIT }),
  });
  if (res.status !== 201) throw new Error(`creating the key ${name}: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { key: string }).key;
}

export interface OtlpSink {
  /** OTEL_EXPORTER_OTLP_ENDPOINT for a child. */
  url: string;
  /** Export requests received and their bytes so far. */
  received(): { requests: number; bytes: number };
  close(): Promise<void>;
}

/** An OTLP/HTTP receiver that reads every export and answers 200, as a collector would. */
export async function startOtlpSink(): Promise<OtlpSink> {
  let requests = 0;
  let bytes = 0;
  const server = createServer((req, res) => {
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on('end', () => {
      requests++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': '0' }).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    received: () => ({ requests, bytes }),
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

/** The environment of a `serve` that samples TRACE_SAMPLE_RATIO of requests into `sink`. */
export function tracedEnv(sink: OtlpSink): Record<string, string> {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: String(TRACE_SAMPLE_RATIO),
  };
}
