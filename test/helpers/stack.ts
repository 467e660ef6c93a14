import { gzipSync } from 'node:zlib';
import { expect } from 'vitest';
import { ADMIN_KEY, createTestEnv, type TestEnv } from './env.ts';
import { checkResponse } from './openapi.ts';
import { runTributary, startTributary, type TributaryProcess } from './processes.ts';

export interface Stack {
  env: TestEnv;
  api: TributaryProcess;
  workers: TributaryProcess[];
  url: string;
  addWorker(extra?: Record<string, string>): Promise<TributaryProcess>;
  close(): Promise<void>;
}

/** Migrated test database + `serve` (+ `work` processes), each a real process. */
export async function startStack(
  opts: { workers?: number; env?: Record<string, string>; workerEnv?: Record<string, string> } = {},
): Promise<Stack> {
  const env = createTestEnv();
  const migrated = await runTributary(['migrate'], env.env(opts.env));
  if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);
  const api = await startTributary('serve', env.env(opts.env));
  const workers: TributaryProcess[] = [];
  const addWorker = async (extra: Record<string, string> = {}) => {
    const w = await startTributary('work', env.env({ ...opts.env, ...opts.workerEnv, ...extra }));
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
    async close() {
      await Promise.all([api, ...workers].map((p) => p.kill9()));
      await env.cleanup();
    },
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

/** Polls `fn` until it returns a truthy value or the time runs out. */
export async function waitFor<T>(
  fn: () => Promise<T>,
  timeoutMs = 30_000,
  what = 'condition',
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last as NonNullable<T>;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/** A valid event with a fresh id. */
export function event(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { id: crypto.randomUUID(), service: 'checkout', type: 'order.placed', ...overrides };
}

/** The API answered no request with a 5xx, logged no error, and every process is still running. */
export async function expectHealthyAfterAbuse(stack: Stack): Promise<void> {
  const buffer = await call(stack.url, '/health/buffer', { key: null });
  expect(buffer.body.deadLetters).toBe(0);
  const serverErrors = stack.api.logs.filter(
    (l) => (l.msg === 'request' && Number(l.status) >= 500) || Number(l.level) >= 50,
  );
  expect(serverErrors).toEqual([]);
  expect(stack.api.child.exitCode).toBeNull();
  for (const w of stack.workers) expect(w.child.exitCode).toBeNull();
}
