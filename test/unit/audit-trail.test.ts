import { Writable } from 'node:stream';
import { Hono } from 'hono';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { AppEnv } from '../../src/http/env.ts';
import { ApiError, errorResponse } from '../../src/http/errors.ts';
import { actionName, auditTrail, escapeForAudit } from '../../src/http/middleware/audit.ts';
import { splitListeners } from '../../src/http/middleware/listener.ts';
import type { AuditRecord } from '../../src/store/audit.repo.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';

describe('actionName', () => {
  it.each([
    ['POST', '/v1/admin/keys', 'keys.create'],
    ['GET', '/v1/admin/keys', 'keys.list'],
    ['DELETE', '/v1/admin/keys/:id', 'keys.delete'],
    ['POST', '/v1/admin/keys/:id/rotate', 'keys.rotate'],
    ['POST', '/v1/admin/retention/run', 'retention.run'],
    ['GET', '/v1/admin/retention/runs', 'retention.runs.list'],
    ['GET', '/v1/admin/retention/runs/:runId', 'retention.runs.get'],
    ['POST', '/v1/admin/dead-letter/replay', 'dead-letter.replay'],
    ['GET', '/v1/admin/audit', 'audit.list'],
    ['DELETE', '/v1/users/:userId/events', 'users.events.delete'],
    ['GET', '/v1/users/:userId/events/export', 'users.events.export'],
    ['PUT', '/v1/users/:userId/opt-out', 'users.opt-out.set'],
    ['GET', '/v1/dsar/:requestId', 'dsar.get'],
    ['GET', undefined, 'unmatched'],
  ])('%s %s → %s', (method, pattern, name) => {
    expect(actionName(method, pattern)).toBe(name);
  });
});

interface Harness {
  app: Hono<AppEnv>;
  records: AuditRecord[];
  metrics: Metrics;
  logs: Record<string, unknown>[];
}

/** An app with the audit trail, a stand-in for auth (`x-api-key: admin` passes) and two routes. */
function harness(opts: { append?: (r: AuditRecord) => Promise<void>; trustProxy?: boolean } = {}): Harness {
  const records: AuditRecord[] = [];
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(JSON.parse(String(chunk)));
      done();
    },
  });
  const metrics = new Metrics();
  const app = new Hono<AppEnv>();
  app.use('*', async (c, next) => {
    c.set('requestId', 'req-1');
    await next();
  });
  app.use(
    '*',
    auditTrail({
      append:
        opts.append ??
        (async (r) => {
          records.push(r);
        }),
      logger: pino(sink),
      metrics,
      trustProxy: opts.trustProxy ?? false,
      waitMs: 50,
    }),
  );
  app.use('/v1/*', async (c, next) => {
    if (c.req.header('x-api-key') !== 'admin') throw new ApiError('unauthorized', 401, 'no key');
    c.set('principal', { keyId: 'k1', scopes: ['admin'], rateLimitPerMinute: null, services: null });
    await next();
  });
  app.post('/v1/admin/keys', (c) => c.json({ id: 'x', key: 'trb_secret' }, 201));
  app.delete('/v1/admin/keys/:id', () => {
    throw new ApiError('not_found', 404, 'no active key with this id');
  });
  app.post('/v1/events', (c) => c.json({ status: 'accepted' }, 202));
  app.notFound((c) => errorResponse(c, new ApiError('not_found', 404, 'no route')));
  app.onError((err, c) =>
    errorResponse(c, err instanceof ApiError ? err : new ApiError('internal', 500, 'internal error')),
  );
  return { app, records, metrics, logs };
}

const admin = { 'x-api-key': 'admin', 'user-agent': 'curl/8' };

describe('auditTrail', () => {
  it('records one row per admin call, with no body and no key', async () => {
    const { app, records } = harness();
    const res = await app.request('/v1/admin/keys', {
      method: 'POST',
      headers: admin,
      body: '{"name":"x"}',
    });
    expect(res.status).toBe(201);
    expect(records).toEqual([
      {
        keyId: 'k1',
        action: 'keys.create',
        method: 'POST',
        path: '/v1/admin/keys',
        target: null,
        ip: null,
        status: 201,
        outcome: 'ok',
        requestId: 'req-1',
        details: { route: '/v1/admin/keys', userAgent: 'curl/8', ms: expect.any(Number) },
      },
    ]);
    expect(JSON.stringify(records)).not.toContain('trb_secret');
    expect(JSON.stringify(records)).not.toContain('"name"');
  });

  it('records refusals: 401 without a key id, 404 with its target and error code', async () => {
    const { app, records } = harness();
    await app.request('/v1/admin/keys/abc', { method: 'DELETE' });
    await app.request('/v1/admin/keys/abc', { method: 'DELETE', headers: admin });
    await app.request('/v1/admin/nothing-here', { headers: admin });
    expect(records.map((r) => [r.keyId, r.action, r.target, r.status, r.outcome, r.details?.error])).toEqual([
      [null, 'keys.delete', 'abc', 401, 'denied', 'unauthorized'],
      ['k1', 'keys.delete', 'abc', 404, 'error', 'not_found'],
      ['k1', 'unmatched', null, 404, 'error', 'not_found'],
    ]);
  });

  it('covers /v1/users and /v1/dsar by path, and nothing else', async () => {
    const { app, records } = harness();
    await app.request('/v1/users/u-1/events', { method: 'DELETE', headers: admin });
    await app.request('/v1/dsar/r-1', { headers: admin });
    await app.request('/v1/events', { method: 'POST', headers: admin, body: '{}' });
    await app.request('/v1/administrator', { headers: admin });
    await app.request('/health/live');
    expect(records.map((r) => r.path)).toEqual(['/v1/users/u-1/events', '/v1/dsar/r-1']);
  });

  it('takes the first X-Forwarded-For entry only when the proxy is trusted', async () => {
    const headers = { ...admin, 'x-forwarded-for': '203.0.113.7, 10.0.0.1' };
    const trusted = harness({ trustProxy: true });
    await trusted.app.request('/v1/admin/keys', { method: 'POST', headers });
    await trusted.app.request('/v1/admin/keys', {
      method: 'POST',
      headers: { ...admin, 'x-forwarded-for': 'not-an-ip' },
    });
    expect(trusted.records.map((r) => r.ip)).toEqual(['203.0.113.7', null]);
    const untrusted = harness();
    await untrusted.app.request('/v1/admin/keys', { method: 'POST', headers });
    expect(untrusted.records[0]?.ip).toBeNull();
  });

  it('answers the call when the write fails, logging the row and counting the failure', async () => {
    const { app, metrics, logs } = harness({
      append: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432')),
    });
    const res = await app.request('/v1/admin/keys', { method: 'POST', headers: admin });
    expect(res.status).toBe(201);
    const counter = await metrics.auditWriteFailures.get();
    expect(counter.values[0]?.value).toBe(1);
    const warning = logs.find((l) => l.msg === 'audit write failed');
    expect(warning?.audit).toMatchObject({ action: 'keys.create', status: 201, keyId: 'k1' });
  });

  it('waits for a slow write only briefly', async () => {
    const { app } = harness({ append: () => new Promise(() => {}) });
    const start = performance.now();
    const res = await app.request('/v1/admin/keys', { method: 'POST', headers: admin });
    expect(res.status).toBe(201);
    expect(performance.now() - start).toBeLessThan(1_000);
  });
});

describe('splitListeners', () => {
  const app = new Hono<AppEnv>();
  app.use('*', splitListeners());
  for (const path of ['/metrics', '/v1/admin/keys', '/v1/events', '/health/live', '/health/ready']) {
    app.get(path, (c) => c.text('ok'));
  }
  app.onError((err, c) => errorResponse(c, err as ApiError));
  const status = async (path: string, listener?: string) =>
    (await app.request(path, {}, listener ? { listener } : undefined)).status;

  it('serves admin paths only on the admin listener, the rest only on the public one', async () => {
    for (const listener of [undefined, 'public', 'admin']) {
      const statuses = await Promise.all(
        ['/metrics', '/v1/admin/keys', '/v1/events', '/health/live', '/health/ready'].map((p) =>
          status(p, listener),
        ),
      );
      expect([listener, statuses]).toEqual([
        listener,
        {
          undefined: [200, 200, 200, 200, 200],
          public: [404, 404, 200, 200, 200],
          admin: [200, 200, 404, 200, 404],
        }[String(listener)],
      ]);
    }
  });
});

describe('escapeForAudit', () => {
  const decode = (text: string) =>
    text.replace(/%u([0-9A-F]{4})|%([0-9A-F]{2})/g, (_, u: string, b: string) =>
      String.fromCharCode(parseInt(u ?? b, 16)),
    );

  it('leaves storable text as it is, a literal % included', () => {
    expect(escapeForAudit('/v1/users/josé 100%/events')).toEqual({
      text: '/v1/users/josé 100%/events',
      escaped: false,
    });
  });

  it('percent-encodes NUL, control characters and lone surrogates, and % with them, reversibly', () => {
    for (const raw of [
      '/v1/users/a\u0000b/events',
      'x%00\u0000',
      'tab\there\u007f',
      'half \ud800 pair',
      '\udc00😀\u0001',
    ]) {
      const { text, escaped } = escapeForAudit(raw);
      expect(escaped).toBe(true);
      // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters that must be gone
      expect(text).not.toMatch(/[\u0000-\u001f\u007f]/);
      expect(text.isWellFormed()).toBe(true);
      expect(decode(text)).toBe(raw);
    }
    expect(escapeForAudit('a\u0000%').text).toBe('a%00%25');
  });
});
