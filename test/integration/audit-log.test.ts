import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { type AppDeps, createApp } from '../../src/http/app.ts';
import { actionName } from '../../src/http/middleware/audit.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { startTributary } from '../helpers/processes.ts';
import { call, type Stack, startStack } from '../helpers/stack.ts';

let stack: Stack;
let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tributary-audit-'));
  // A retention pass is among the admin calls: keep its files out of the repository.
  stack = await startStack({
    env: { ARCHIVE_DIR: join(dir, 'archive'), ARCHIVE_WORK_DIR: join(dir, 'work') },
  });
});
afterAll(async () => {
  await stack?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface AuditRow {
  id: string;
  at: Date;
  key_id: string | null;
  action: string;
  method: string;
  path: string;
  target: string | null;
  ip: string | null;
  status: number;
  outcome: string;
  request_id: string | null;
  details: Record<string, unknown> | null;
}

const rowsOf = async (requestId: string) =>
  (await stack.env.pool.query<AuditRow>('SELECT * FROM audit_log WHERE request_id = $1', [requestId])).rows;
const total = async () =>
  (await stack.env.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log')).rows[0]?.n ?? 0;

/** Calls `path` with a request id of its own and returns the response and that call's audit rows. */
async function audited(path: string, opts: Parameters<typeof call>[2] = {}) {
  const requestId = `audit-${randomUUID()}`;
  const res = await call(stack.url, path, {
    ...opts,
    headers: { ...opts.headers, 'x-request-id': requestId },
  });
  return { res, rows: await rowsOf(requestId), requestId };
}

/**
 * Every admin and compliance route the app registers, read from the app itself, so a route
 * added later is covered by this test without editing it. The app is built with inert
 * stand-ins for its clients: building routes may touch them, but no request reaches them.
 */
function auditedRoutes(): { method: string; path: string }[] {
  const inert: unknown = new Proxy(() => {}, {
    get: (_t, p) =>
      typeof p === 'symbol' || p === 'then'
        ? undefined
        : p === 'toString' || p === 'valueOf'
          ? () => ''
          : inert,
    apply: () => inert,
    construct: () => inert as object,
  });
  const known: Record<string, unknown> = {
    config: loadConfig({}),
    logger: pino({ level: 'silent' }),
    metrics: new Metrics(),
  };
  const deps = new Proxy(known, { get: (t, p) => (typeof p === 'string' && p in t ? t[p] : inert) });
  const app = createApp(deps as unknown as AppDeps);
  const seen = new Set<string>();
  return app.routes
    .filter((r) => r.method !== 'ALL' && /^\/v1\/(?:admin|users|dsar)\//.test(r.path))
    .filter((r) => !seen.has(`${r.method} ${r.path}`) && seen.add(`${r.method} ${r.path}`))
    .map((r) => ({ method: r.method, path: r.path }));
}

/** The stable names of the routes known when this was written; others must still get a name. */
const ACTIONS: Record<string, string> = {
  'POST /v1/admin/keys': 'keys.create',
  'GET /v1/admin/keys': 'keys.list',
  'DELETE /v1/admin/keys/:id': 'keys.delete',
  'POST /v1/admin/keys/:id/rotate': 'keys.rotate',
  'POST /v1/admin/dead-letter/replay': 'dead-letter.replay',
  'POST /v1/admin/retention/run': 'retention.run',
  'GET /v1/admin/retention/runs': 'retention.runs.list',
  'GET /v1/admin/retention/runs/:runId': 'retention.runs.get',
  'GET /v1/admin/archives': 'archives.list',
  'GET /v1/admin/audit': 'audit.list',
  'PUT /v1/users/:userId/opt-out': 'users.opt-out.set',
  'DELETE /v1/users/:userId/opt-out': 'users.opt-out.delete',
  'DELETE /v1/users/:userId/events': 'users.events.delete',
  'GET /v1/users/:userId/events/export': 'users.events.export',
  'GET /v1/dsar/:requestId': 'dsar.get',
};

const BODIES: Record<string, unknown> = {
  'POST /v1/admin/keys': { name: 'audited', scopes: ['read'] },
};

describe('audit_log', () => {
  it('gets exactly one row per call of every admin and compliance route, with its fields', async () => {
    const routes = auditedRoutes();
    expect(routes.map((r) => `${r.method} ${r.path}`)).toEqual(
      expect.arrayContaining(['POST /v1/admin/keys', 'DELETE /v1/admin/keys/:id', 'GET /v1/admin/audit']),
    );
    const before = await total();
    for (const route of routes) {
      const name = `${route.method} ${route.path}`;
      const params = [...route.path.matchAll(/:(\w+)/g)].map(([, p]) => p ?? '');
      const values = params.map((p) => (p === 'userId' ? `subject-${randomUUID()}` : randomUUID()));
      let i = 0;
      const path = route.path.replace(/:\w+/g, () => values[i++] ?? '');
      const withBody = route.method === 'POST' || route.method === 'PUT' || route.method === 'PATCH';
      const { res, rows, requestId } = await audited(path, {
        method: route.method,
        ...(withBody ? { body: BODIES[name] ?? {} } : {}),
      });
      expect(res.status, name).toBeLessThan(500);
      expect(rows, name).toHaveLength(1);
      const row = rows[0] as AuditRow;
      expect(row, name).toMatchObject({
        key_id: 'admin-bootstrap',
        action: ACTIONS[name] ?? actionName(route.method, route.path),
        method: route.method,
        path,
        target: values.at(-1) ?? null,
        ip: '127.0.0.1',
        status: res.status,
        outcome: res.status < 400 ? 'ok' : 'error',
        request_id: requestId,
      });
      expect(row.action, name).toMatch(/^[a-z0-9-]+(\.[a-z0-9-]+)+$/);
      expect(row.details, name).toMatchObject({ route: route.path });
      // Never a key: the one this call may have created is not in its row.
      if (typeof res.body?.key === 'string') expect(JSON.stringify(row)).not.toContain(res.body.key);
    }
    expect(await total()).toBe(before + routes.length);
  });

  it('records refused calls: 401 without a key id, 403, 400, 404 and 429 with theirs', async () => {
    const unauth = await audited('/v1/admin/keys', { key: null });
    expect(unauth.res.status).toBe(401);
    expect(unauth.rows).toMatchObject([
      { key_id: null, action: 'keys.list', outcome: 'denied', details: { error: 'unauthorized' } },
    ]);

    const reader = await call(stack.url, '/v1/admin/keys', { body: { name: 'reader', scopes: ['read'] } });
    const forbidden = await audited('/v1/dsar/x', { key: reader.body.key });
    expect(forbidden.res.status).toBe(403);
    expect(forbidden.rows).toMatchObject([
      { key_id: reader.body.id, action: 'dsar.get', target: 'x', outcome: 'denied', status: 403 },
    ]);

    const invalid = await audited('/v1/admin/keys', { body: { name: '', scopes: [] } });
    expect(invalid.rows).toMatchObject([
      { status: 400, outcome: 'error', action: 'keys.create', details: { error: 'invalid_request' } },
    ]);
    // Never the request body.
    expect(JSON.stringify(invalid.rows)).not.toContain('scopes');

    const unknown = await audited('/v1/admin/no-such-thing');
    expect(unknown.rows).toMatchObject([
      { status: 404, outcome: 'error', action: 'unmatched', path: '/v1/admin/no-such-thing' },
    ]);

    const limited = await call(stack.url, '/v1/admin/keys', {
      body: { name: 'slow', scopes: ['admin'], rateLimitPerMinute: 1 },
    });
    await call(stack.url, '/v1/admin/keys', { key: limited.body.key });
    const refused = await audited('/v1/admin/keys', { key: limited.body.key });
    expect(refused.res.status).toBe(429);
    expect(refused.rows).toMatchObject([
      { key_id: limited.body.id, status: 429, outcome: 'error', details: { error: 'rate_limited' } },
    ]);
  });

  it('writes nothing for ingest, reads and health', async () => {
    const before = await total();
    await call(stack.url, '/v1/events', { body: { service: 'checkout', type: 'order.placed' } });
    await call(stack.url, '/v1/events?limit=1');
    await call(stack.url, '/health/live', { key: null });
    await call(stack.url, '/metrics', { key: null });
    expect(await total()).toBe(before);
  });

  it('refuses UPDATE, DELETE and TRUNCATE, even to the table owner', async () => {
    const { pool } = stack.env;
    expect(await total()).toBeGreaterThan(0);
    const refused = /audit_log is append-only/;
    await expect(pool.query(`UPDATE audit_log SET status = 200`)).rejects.toThrow(refused);
    await expect(pool.query(`DELETE FROM audit_log`)).rejects.toThrow(refused);
    await expect(pool.query(`TRUNCATE audit_log`)).rejects.toThrow(refused);
    await expect(
      pool.query(`INSERT INTO audit_log (action, method, path, status, outcome)
      VALUES ('test.insert', 'GET', '/', 200, 'ok')`),
    ).resolves.toBeDefined();
  });
});

describe('client address and failed writes', () => {
  it('takes X-Forwarded-For only with TRUST_PROXY', async () => {
    const xff = { 'x-forwarded-for': '203.0.113.9, 10.1.2.3' };
    const direct = await audited('/v1/admin/keys', { headers: xff });
    expect(direct.rows[0]?.ip).toBe('127.0.0.1');

    const proxied = await startTributary('serve', stack.env.env({ TRUST_PROXY: 'true' }));
    try {
      const requestId = `audit-${randomUUID()}`;
      await call(proxied.url, '/v1/admin/keys', { headers: { ...xff, 'x-request-id': requestId } });
      expect((await rowsOf(requestId))[0]?.ip).toBe('203.0.113.9');
    } finally {
      await proxied.kill9();
    }
  });

  it('answers the call while PostgreSQL is unreachable, logging the row and counting the failure', async () => {
    const cut = await startTributary(
      'serve',
      stack.env.env({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/tributary_test_unreachable' }),
    );
    try {
      const res = await call(cut.url, '/v1/admin/dead-letter/replay', {
        method: 'POST',
        headers: { 'x-request-id': 'audit-db-down' },
      });
      expect(res.status).toBe(200);
      const warning = await cut.waitForLog((l) => l.msg === 'audit write failed');
      expect(warning.level).toBe(40);
      expect(warning.audit).toMatchObject({
        action: 'dead-letter.replay',
        keyId: 'admin-bootstrap',
        status: 200,
        outcome: 'ok',
        requestId: 'audit-db-down',
      });
      const metrics = await call(cut.url, '/metrics', { key: null });
      expect(metrics.body).toMatch(/^tributary_audit_write_failures_total 1$/m);
    } finally {
      await cut.kill9();
    }
  });
});

describe('GET /v1/admin/audit', () => {
  it('pages newest first with a cursor and filters by key, action and time', async () => {
    const from = new Date().toISOString();
    const key = await call(stack.url, '/v1/admin/keys', { body: { name: 'auditor', scopes: ['admin'] } });
    for (let i = 0; i < 5; i++)
      await call(stack.url, `/v1/admin/retention/runs?limit=${i + 1}`, { key: key.body.key });

    const seen: { id: number; action: string }[] = [];
    let cursor: string | null = null;
    do {
      const page: Awaited<ReturnType<typeof call>> = await call(
        stack.url,
        `/v1/admin/audit?keyId=${key.body.id}&limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(page.status).toBe(200);
      expect(page.body.entries.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.entries);
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen).toHaveLength(5);
    expect(seen.every((e) => e.action === 'retention.runs.list')).toBe(true);
    const ids = seen.map((e) => e.id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    expect(seen[0]).toMatchObject({
      keyId: key.body.id,
      method: 'GET',
      status: 200,
      outcome: 'ok',
      ip: '127.0.0.1',
    });

    const created = await call(stack.url, `/v1/admin/audit?action=keys.create&from=${from}`);
    expect(created.body.entries.map((e: { target: unknown; action: string }) => e.action)).toEqual([
      'keys.create',
    ]);
    const future = await call(
      stack.url,
      `/v1/admin/audit?from=${new Date(Date.now() + 60_000).toISOString()}`,
    );
    expect(future.body).toEqual({ entries: [], nextCursor: null });
    const past = await call(
      stack.url,
      `/v1/admin/audit?to=${from}&action=retention.runs.list&keyId=${key.body.id}`,
    );
    expect(past.body.entries).toEqual([]);
  });

  it('answers 400 invalid_query to bad parameters, 401 and 403 to the wrong caller', async () => {
    for (const q of [
      'limit=0',
      'limit=1001',
      'limit=x',
      'from=yesterday',
      'action=Keys.Create',
      'colour=red',
    ]) {
      const res = await call(stack.url, `/v1/admin/audit?${q}`);
      expect([q, res.status, res.body.error?.code]).toEqual([q, 400, 'invalid_query']);
    }
    const cursor = await call(stack.url, '/v1/admin/audit?cursor=bm9wZQ');
    expect([cursor.status, cursor.body.error?.code]).toEqual([400, 'invalid_cursor']);
    expect((await call(stack.url, '/v1/admin/audit', { key: null })).status).toBe(401);
    const reader = await call(stack.url, '/v1/admin/keys', { body: { name: 'r', scopes: ['read', 'dsar'] } });
    expect((await call(stack.url, '/v1/admin/audit', { key: reader.body.key })).status).toBe(403);
  });
});
