import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it, onTestFinished } from 'vitest';
import { BufferFullError, BufferUnavailableError } from '../../src/buffer/errors.ts';
import { type AppDeps, createApp } from '../../src/http/app.ts';
import { KeyResolver } from '../../src/http/key-resolver.ts';
import { servedOnBothListeners } from '../../src/http/middleware/listener.ts';
import { createDb } from '../../src/store/db.ts';
import { NOOP_ADMIN_KEY, noopDeps, scopedKey } from '../helpers/noop-deps.ts';
import { checkResponse } from '../helpers/openapi.ts';

// createApp with inert dependencies, through app.request(): the error contract, the
// OpenAPI document, and every answer checked against that document like integration tests do.

const USER = 'subject-1';
const RUN = '5f0c7f2e-3b1a-4c7e-9d2f-0a1b2c3d4e5f';
/** A file of the console {@link builtConsole} makes. */
const ASSET = 'main-TESTHASH.js';

/** A console "built" into a temporary directory: a page and {@link ASSET}. */
function builtConsole(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tributary-console-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'assets'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>console</title>');
  writeFileSync(join(dir, 'assets', ASSET), 'export {};');
  return dir;
}

interface Answer {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: inspected field by field, like call()'s
  body: any;
}

/** One request to an app built from `deps`; the answer must be one the document describes. */
async function request(
  deps: AppDeps,
  path: string,
  init: { method?: string; key?: string | null; body?: unknown; headers?: Record<string, string> } = {},
  env?: Record<string, unknown>,
): Promise<Answer> {
  const app = createApp(deps);
  const method = init.method ?? (init.body === undefined ? 'GET' : 'POST');
  const headers: Record<string, string> = { ...init.headers };
  const key = init.key === undefined ? NOOP_ADMIN_KEY : init.key;
  if (key !== null) headers['x-api-key'] = key;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const body = init.body === undefined ? undefined : JSON.stringify(init.body);
  const res = await app.request(path, { method, headers, ...(body ? { body } : {}) }, env as never);
  const text = await res.text();
  checkResponse({ method, path, status: res.status, contentType: res.headers.get('content-type'), text });
  const isJson = res.headers.get('content-type')?.includes('json') ?? false;
  return { status: res.status, headers: res.headers, body: isJson && text ? JSON.parse(text) : text };
}

/** A pg-like data error: invalid input for a uuid column (SQLSTATE 22P02). */
const dataError = () =>
  Object.assign(new Error('invalid input syntax for type uuid: "x"'), { code: '22P02', severity: 'ERROR' });
/** What ioredis rejects a command with when its connection went away. */
const redisClosed = () => new Error('Connection is closed.');
/** What pg rejects with when PostgreSQL is not listening. */
const refused = () =>
  Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

/** A pool (and the drizzle instance over it) whose every query fails with `err()`. */
function failingDatabase(err: () => Error): Pick<AppDeps, 'pool' | 'db'> {
  const query = async () => {
    throw err();
  };
  const pool = { query, connect: async () => ({ query, release: () => {} }), on: () => pool };
  return { pool: pool as unknown as AppDeps['pool'], db: createDb(pool as unknown as AppDeps['pool']) };
}

function expectError(res: Answer, status: number, code: string): void {
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
  expect(res.body.error.message).toEqual(expect.any(String));
  expect(res.body.error.requestId).toBe(res.headers.get('x-request-id'));
}

describe('the error contract', () => {
  it('answers an unknown route 404 not_found, with the request id in body and header', async () => {
    const res = await request(noopDeps(), '/no/such/route', { key: null });
    expectError(res, 404, 'not_found');
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('echoes a sane x-request-id and replaces an insane one', async () => {
    const echoed = await request(noopDeps(), '/health/live', {
      key: null,
      headers: { 'x-request-id': 'req-42' },
    });
    expect(echoed.headers.get('x-request-id')).toBe('req-42');
    const replaced = await request(noopDeps(), '/health/live', {
      key: null,
      headers: { 'x-request-id': 'bad id with spaces' },
    });
    expect(replaced.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers 401 without a key and 403 without the scope', async () => {
    expectError(await request(noopDeps(), '/v1/events?limit=1', { key: null }), 401, 'unauthorized');
    expectError(await request(noopDeps(), '/v1/events?limit=1', { key: 'unknown' }), 401, 'unauthorized');
    expectError(
      await request(noopDeps(), '/v1/events?limit=1', { key: scopedKey('ingest') }),
      403,
      'forbidden',
    );
  });

  it('turns zod refusals into 400 with the code and message each route names', async () => {
    const query = await request(noopDeps(), '/v1/events?limit=0');
    expectError(query, 400, 'invalid_query');
    expect(query.body.error.details).toEqual([expect.objectContaining({ path: 'limit', code: 'too_small' })]);
    expectError(await request(noopDeps(), '/v1/events?bogus=1'), 400, 'invalid_query');
    expectError(await request(noopDeps(), '/v1/admin/audit?from=yesterday'), 400, 'invalid_query');
    expectError(await request(noopDeps(), '/v1/admin/archives?month=2024-13'), 400, 'invalid_query');
    expectError(await request(noopDeps(), '/v1/admin/retention/runs?limit=500'), 400, 'invalid_query');

    const key = await request(noopDeps(), '/v1/admin/keys', { body: { name: '', scopes: ['nope'] } });
    expectError(key, 400, 'invalid_request');
    expect(key.body.error.message).toBe('invalid key request');
    expect(key.body.error.details.map((d: { path: string }) => d.path).sort()).toEqual(['name', 'scopes.0']);

    const rotation = await request(noopDeps(), `/v1/admin/keys/${RUN}/rotate`, {
      body: { overlapSeconds: -1 },
    });
    expectError(rotation, 400, 'invalid_request');
    expect(rotation.body.error.message).toBe('invalid rotation request');

    const replay = await request(noopDeps(), '/v1/admin/dead-letter/replay?limit=0', { method: 'POST' });
    expectError(replay, 400, 'invalid_query');
    expect(replay.body.error.message).toBe('limit must be a whole number from 1 to 100000');

    const subject = await request(noopDeps(), `/v1/users/${'u'.repeat(257)}/opt-out`, { method: 'PUT' });
    expectError(subject, 400, 'invalid_user_id');
    expect(subject.body.error.message).toBe('userId must be 1–256 characters');
    // A NUL is refused before any route reads the path (middleware/url-guard.ts).
    expectError(
      await request(noopDeps(), '/v1/users/a%00b/events', { method: 'DELETE' }),
      400,
      'invalid_request',
    );
  });

  it('answers a ZodError thrown by a handler as that route’s 400, never 500', async () => {
    const { z } = await import('zod');
    const deadLetters = {
      replay: async () => z.object({ replayed: z.number() }).parse({ replayed: 'x' }).replayed,
    } as unknown as AppDeps['deadLetters'];
    const res = await request(noopDeps({ deadLetters }), '/v1/admin/dead-letter/replay', { method: 'POST' });
    expectError(res, 400, 'invalid_query');
    expect(res.body.error.details).toEqual([
      expect.objectContaining({ path: 'replayed', code: 'invalid_type' }),
    ]);
  });
});

describe('failures become 503 only through withDb and withBuffer', () => {
  it('a data error while requesting an erasure is 500 internal with its request id, not a 503', async () => {
    const erasure = { request: async () => Promise.reject(dataError()) } as unknown as AppDeps['erasure'];
    const res = await request(noopDeps({ erasure }), `/v1/users/${USER}/events`, { method: 'DELETE' });
    expectError(res, 500, 'internal');
    expect(res.headers.get('retry-after')).toBeNull();
  });

  it('Redis gone while requesting an erasure is 503 buffer_unavailable; PostgreSQL gone, database_unavailable', async () => {
    const failing = (err: () => Error) =>
      noopDeps({ erasure: { request: async () => Promise.reject(err()) } as unknown as AppDeps['erasure'] });
    const redis = await request(failing(redisClosed), `/v1/users/${USER}/events`, { method: 'DELETE' });
    expectError(redis, 503, 'buffer_unavailable');
    expect(redis.headers.get('retry-after')).toBe('1');
    const pg = await request(failing(refused), `/v1/users/${USER}/events`, { method: 'DELETE' });
    expectError(pg, 503, 'database_unavailable');
    expect(pg.headers.get('retry-after')).toBe('5');
  });

  it('a Redis error on a database path is 500, never database_unavailable', async () => {
    const res = await request(noopDeps(failingDatabase(redisClosed)), '/v1/admin/retention/runs');
    expectError(res, 500, 'internal');
  });

  it('a data error on a database path is 500; an unreachable database, 503 database_unavailable', async () => {
    expectError(
      await request(noopDeps(failingDatabase(dataError)), '/v1/admin/retention/runs'),
      500,
      'internal',
    );
    expectError(
      await request(noopDeps(failingDatabase(refused)), '/v1/admin/retention/runs'),
      503,
      'database_unavailable',
    );
  });

  it('sees pg’s error under drizzle’s wrapper: an unreachable database on GET /v1/events is 503', async () => {
    const down = await request(noopDeps(failingDatabase(refused)), '/v1/events?limit=1');
    expectError(down, 503, 'database_unavailable');
    const data = await request(noopDeps(failingDatabase(dataError)), '/v1/events?limit=1');
    expectError(data, 500, 'internal');
  });

  it('ingest: buffer unavailable 503, buffer full 429 backpressure, anything else 500', async () => {
    const producing = (err: () => Error) =>
      noopDeps({
        producer: { enqueue: async () => Promise.reject(err()) } as unknown as AppDeps['producer'],
      });
    const event = { service: 'checkout', type: 'order.placed' };
    const batch = { events: [event] };
    for (const path of ['/v1/events', '/v1/events/batch']) {
      const body = path === '/v1/events' ? event : batch;
      const unavailable = () => new BufferUnavailableError('Stream isn’t writeable');
      expectError(await request(producing(unavailable), path, { body }), 503, 'buffer_unavailable');
      const full = () => new BufferFullError('OOM command not allowed');
      expectError(await request(producing(full), path, { body }), 429, 'backpressure');
      const bug = () => new TypeError('cannot read properties of undefined');
      expectError(await request(producing(bug), path, { body }), 500, 'internal');
    }
  });

  it('CORS: none unless CORS_ORIGINS is set; with *, any origin, never with credentials', async () => {
    const preflight = (deps: AppDeps, path = '/v1/batch') =>
      createApp(deps).request(path, {
        method: 'OPTIONS',
        headers: { origin: 'https://any.example', 'access-control-request-method': 'POST' },
      });
    const closed = await preflight(noopDeps());
    expect(closed.headers.get('access-control-allow-origin')).toBeNull();
    expect(closed.status).toBe(401);
    const open = noopDeps({ config: { ...noopDeps().config, CORS_ORIGINS: ['*'] } });
    const any = await preflight(open);
    expect(any.status).toBe(204);
    expect(any.headers.get('access-control-allow-origin')).toBe('*');
    expect(any.headers.get('access-control-allow-credentials')).toBeNull();
    expect((await preflight(open, '/v1/events')).status).toBe(204);
    expect((await preflight(open, '/v1/admin/keys')).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('Segment routes: buffer unavailable 503 and backpressure 429 carry Retry-After (the SDKs retry them)', async () => {
    const bound = new KeyResolver({
      adminApiKey: undefined,
      logger: pino({ level: 'silent' }),
      findByHash: async () => ({
        id: '00000000-0000-4000-8000-0000000000aa',
        name: 'web',
        scopes: ['ingest'],
        services: ['web'],
        rateLimitPerMinute: null,
        keyPrefix: 'key-',
        createdAt: new Date(0).toISOString(),
        revokedAt: null,
        expiresAt: null,
      }),
    });
    const failing = (err: () => Error, overloaded = false) =>
      noopDeps({
        keys: bound,
        producer: { enqueue: async () => Promise.reject(err()) } as unknown as AppDeps['producer'],
        ...(overloaded ? { monitor: { overloaded: true } as unknown as AppDeps['monitor'] } : {}),
      });
    const body = { batch: [{ type: 'track', event: 'E' }] };
    const down = await request(
      failing(() => new BufferUnavailableError('gone')),
      '/v1/batch',
      { body, key: 'w' },
    );
    expectError(down, 503, 'buffer_unavailable');
    expect(down.headers.get('retry-after')).toBe('1');
    const full = await request(
      failing(() => new BufferFullError('OOM')),
      '/v1/track',
      { body: body.batch[0], key: 'w' },
    );
    expectError(full, 429, 'backpressure');
    expect(full.headers.get('retry-after')).toBe('1');
    const over = await request(
      failing(() => new Error('unused'), true),
      '/v1/batch',
      { body, key: 'w' },
    );
    expectError(over, 429, 'backpressure');
    expect(over.headers.get('retry-after')).toBe('1');
  });

  it('dead-letter replay: Redis gone is 503 buffer_unavailable; a Redis reply error (a bug) is 500', async () => {
    const replaying = (err: () => Error) =>
      noopDeps({
        deadLetters: { replay: async () => Promise.reject(err()) } as unknown as AppDeps['deadLetters'],
      });
    const replay = { method: 'POST' } as const;
    expectError(
      await request(replaying(redisClosed), '/v1/admin/dead-letter/replay', replay),
      503,
      'buffer_unavailable',
    );
    const reply = () => Object.assign(new Error('ERR unknown command'), { name: 'ReplyError' });
    expectError(await request(replaying(reply), '/v1/admin/dead-letter/replay', replay), 500, 'internal');
  });

  it('auth: an unreachable database is 503 auth_unavailable; any other lookup failure is 500', async () => {
    const resolving = (err: () => Error) =>
      noopDeps({ keys: { resolve: async () => Promise.reject(err()) } as unknown as AppDeps['keys'] });
    expectError(
      await request(resolving(refused), '/v1/events?limit=1', { key: 'k' }),
      503,
      'auth_unavailable',
    );
    expectError(await request(resolving(dataError), '/v1/events?limit=1', { key: 'k' }), 500, 'internal');
  });
});

describe('GET /openapi.json', () => {
  it('serves the OpenAPI 3.1 document without a key: Tributary, at the package version', async () => {
    const res = await request(noopDeps(), '/openapi.json', { key: null });
    expect(res.status).toBe(200);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    expect(res.body.openapi).toMatch(/^3\.1\.\d+$/);
    expect(res.body.info).toMatchObject({ title: 'Tributary', version: pkg.version });
    expect(res.body.components.securitySchemes).toMatchObject({
      apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' },
      bearer: { type: 'http', scheme: 'bearer' },
    });
  });

  it('describes every route the app serves, and nothing it does not', async () => {
    const app = createApp(noopDeps());
    const document = (await (await app.request('/openapi.json')).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const documented = Object.entries(document.paths).flatMap(([path, item]) =>
      Object.keys(item).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
    );
    const served = new Set(app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path}`));
    expect(documented.sort()).toEqual([...served].sort());
  });
});

/** Every operation of the document with its path parameters filled in. */
async function operations(): Promise<{ method: string; path: string; scopes: string[]; open: boolean }[]> {
  const app = createApp(noopDeps());
  const document = (await (await app.request('/openapi.json')).json()) as {
    paths: Record<string, Record<string, { security?: Record<string, string[]>[] }>>;
  };
  return Object.entries(document.paths).flatMap(([template, item]) =>
    Object.entries(item).map(([method, op]) => ({
      method: method.toUpperCase(),
      path: template.replace(/\{(\w+)\}/g, (_, name: string) =>
        name === 'userId' ? USER : name === 'name' ? ASSET : RUN,
      ),
      scopes: op.security?.flatMap((s) => Object.values(s).flat()) ?? [],
      // `security: []`: no key at all (whoami needs a key, but no scope).
      open: (op.security ?? []).length === 0,
    })),
  );
}

describe('every operation (as Unkey runs its common route tests)', () => {
  it('with a scope declared: 401 without a key, 403 with a key lacking it, never a 5xx', async () => {
    const ops = await operations();
    const secured = ops.filter((op) => op.scopes.length > 0);
    expect(secured.length).toBeGreaterThan(15);
    for (const op of secured) {
      const unauthenticated = await request(noopDeps(), op.path, { method: op.method, key: null });
      expect([op.method, op.path, unauthenticated.status]).toEqual([op.method, op.path, 401]);
      const other = op.scopes.includes('read') ? 'ingest' : 'read';
      const forbidden = await request(noopDeps(), op.path, { method: op.method, key: scopedKey(other) });
      expect([op.method, op.path, forbidden.status]).toEqual([op.method, op.path, 403]);
    }
  });

  it('without a scope (liveness, readiness, metrics, this document, the console): answered without a key', async () => {
    const all = (await operations()).filter((op) => op.open);
    // A webhook delivery carries its source's signature instead of a key (§15): no key is
    // asked for, and a source that does not exist is a 404.
    const webhooks = all.filter((op) => op.path.startsWith('/v1/webhooks/'));
    expect(webhooks.map((op) => op.method)).toEqual(['POST']);
    for (const op of webhooks) {
      const res = await request(noopDeps(), op.path, { method: 'POST', key: null, body: {} });
      expect([op.path, res.status]).toEqual([op.path, 404]);
    }
    const open = all.filter((op) => !webhooks.includes(op));
    expect(open.map((op) => op.path).sort()).toEqual(
      ['/health/live', '/health/ready', '/metrics', '/openapi.json', '/', `/assets/${ASSET}`].sort(),
    );
    const consoleDir = builtConsole();
    for (const op of open) {
      const res = await request(noopDeps({ consoleDir }), op.path, { key: null });
      expect([op.path, res.status]).toEqual([op.path, 200]);
    }
  });

  it('with ADMIN_PORT: admin routes, health details and /metrics only on the admin listener, documented 404s elsewhere', async () => {
    for (const op of await operations()) {
      const adminOnly =
        op.path === '/metrics' ||
        op.path.startsWith('/v1/admin/') ||
        /^\/health(?!\/live|\/ready)/.test(op.path);
      const listener = adminOnly ? 'public' : 'admin';
      if (servedOnBothListeners(op.path)) continue;
      const res = await request(noopDeps(), op.path, { method: op.method }, { listener });
      expect([op.method, op.path, res.status]).toEqual([op.method, op.path, 404]);
    }
  });
});
