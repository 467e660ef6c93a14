import { gzipSync } from 'node:zlib';
import { expect } from 'vitest';
import { ADMIN_KEY, createTestEnv, type TestEnv } from './env.ts';
import { checkResponse } from './openapi.ts';
import type { TributaryProcess } from './processes.ts';

// waitFor lived here; the tests import it from either module.
export { sleep, waitFor } from './wait.ts';

export interface Stack {
  env: TestEnv;
  api: TributaryProcess;
  workers: TributaryProcess[];
  url: string;
  addWorker(extra?: Record<string, string>): Promise<TributaryProcess>;
  close(): Promise<void>;
}

export interface StackOptions {
  /** `work` processes started with the stack (more with {@link Stack.addWorker}). */
  workers?: number;
  /** Environment of the stack's own processes (`migrate`, `serve`, `work`). */
  env?: Record<string, string>;
  /** More environment for the `work` processes. */
  workerEnv?: Record<string, string>;
  /** Settings of every process of this test, the CLI runs through `stack.env.env()` included. */
  settings?: Record<string, string>;
}

/** Migrated test database + `serve` (+ `work` processes), each a real process. */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const env = createTestEnv(opts.settings ? { settings: opts.settings } : {});
  await env.migrate(opts.env);
  const api = await env.start('serve', opts.env);
  const workers: TributaryProcess[] = [];
  const addWorker = async (extra: Record<string, string> = {}) => {
    const w = await env.start('work', { ...opts.env, ...opts.workerEnv, ...extra });
    workers.push(w);
    return w;
  };
  for (let i = 0; i < (opts.workers ?? 0); i++) await addWorker();
  return {
    env,
    api,
    workers,
    url: api.url,
    addWorker,
    // The env kills every process it started (workers a test dropped from `workers` too).
    close: () => env.cleanup(),
  };
}

export interface RequestOptions {
  method?: string;
  key?: string | null;
  body?: unknown;
  /** Raw body; `body` is JSON-encoded otherwise. */
  raw?: string | Uint8Array;
  contentType?: string | null;
  gzip?: boolean;
  headers?: Record<string, string>;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: test responses are inspected field by field
  body: any;
}

/**
 * One HTTP call to the API; JSON in, JSON (or text) out. The response is checked against
 * the OpenAPI document: an undocumented status or body throws `UndocumentedResponse`.
 */
export async function call(baseUrl: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...opts.headers };
  const key = opts.key === undefined ? ADMIN_KEY : opts.key;
  if (key !== null) headers['x-api-key'] = key;
  let body: string | Uint8Array | undefined =
    opts.raw ?? (opts.body !== undefined ? JSON.stringify(opts.body) : undefined);
  if (body !== undefined && opts.contentType !== null)
    headers['content-type'] = opts.contentType ?? 'application/json';
  if (body !== undefined && opts.gzip) {
    body = gzipSync(body);
    headers['content-encoding'] = 'gzip';
  }
  const method = opts.method ?? (body !== undefined ? 'POST' : 'GET');
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers,
    body: body as string | Uint8Array<ArrayBuffer> | undefined,
  });
  const text = await res.text();
  checkResponse({ method, path, status: res.status, contentType: res.headers.get('content-type'), text });
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/** A valid event with a fresh id. */
export function event(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { id: crypto.randomUUID(), service: 'checkout', type: 'order.placed', ...overrides };
}

/**
 * A buffer entry's JSON that PostgreSQL refuses (a date it cannot read), as a corrupted or
 * foreign producer would write it straight into the stream; it must end in the dead letters.
 */
export function unstorableEntry(): string {
  return JSON.stringify({
    id: crypto.randomUUID(),
    service: 'x',
    type: 't',
    timestamp: 'not-a-date',
    receivedAt: new Date().toISOString(),
  });
}

/** The API answered no request with a 5xx, logged no error, and every process is still running. */
export async function expectHealthyAfterAbuse(stack: Stack): Promise<void> {
  const buffer = await call(stack.url, '/health/buffer');
  expect(buffer.body.deadLetters).toBe(0);
  const serverErrors = stack.api.logs.filter(
    (l) => (l.msg === 'request' && Number(l.status) >= 500) || Number(l.level) >= 50,
  );
  expect(serverErrors).toEqual([]);
  expect(stack.api.child.exitCode).toBeNull();
  for (const w of stack.workers) expect(w.child.exitCode).toBeNull();
}
