import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, createTestEnv, type TestEnv } from '../helpers/env.ts';
import { checkResponse } from '../helpers/openapi.ts';
import { runTributary, startTributary } from '../helpers/processes.ts';

let env: TestEnv;
let dir: string;
let cert: string;
beforeAll(async () => {
  env = createTestEnv();
  const migrated = await runTributary(['migrate'], env.env());
  expect(migrated.code, migrated.stderr).toBe(0);
  dir = mkdtempSync(join(tmpdir(), 'tributary-tls-'));
  // A throwaway self-signed certificate for 127.0.0.1; the client trusts exactly it.
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
      ...['-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1'],
      ...['-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    ],
    { stdio: 'ignore' },
  );
  cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
});
afterAll(async () => {
  await env?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request over HTTP or HTTPS (trusting only the test's certificate). */
function send(url: string, opts: { method?: string; key?: string; body?: unknown } = {}): Promise<Reply> {
  const https = url.startsWith('https:');
  const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const method = opts.method ?? (body ? 'POST' : 'GET');
  return new Promise((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(
      url,
      {
        method,
        agent: false,
        headers: {
          ...(opts.key ? { 'x-api-key': opts.key } : {}),
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        ...(https ? { ca: cert } : {}),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          try {
            const { pathname, search } = new URL(url);
            const contentType = res.headers['content-type'] ?? null;
            checkResponse({ method, path: `${pathname}${search}`, status, contentType, text });
          } catch (err) {
            reject(err);
            return;
          }
          resolve({ status, headers: res.headers, body: text });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** `serve` with `extra` settings, and the URLs of its listeners (from the `listening` line). */
async function serve(extra: Record<string, string>) {
  const proc = await startTributary('serve', env.env(extra));
  const line = await proc.waitForLog((l) => l.msg === 'listening');
  const scheme = line.tls ? 'https' : 'http';
  return {
    proc,
    line,
    url: `${scheme}://127.0.0.1:${line.port}`,
    adminUrl: line.adminPort === undefined ? undefined : `${scheme}://127.0.0.1:${line.adminPort}`,
  };
}

const event = () => ({ service: 'checkout', type: 'order.placed' });

function expectSecureHeaders(reply: Reply, hsts: boolean): void {
  expect(reply.headers).toMatchObject({
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  });
  expect(reply.headers['x-request-id']).toBeTruthy();
  if (hsts) expect(reply.headers['strict-transport-security']).toMatch(/^max-age=\d+/);
  else expect(reply.headers['strict-transport-security']).toBeUndefined();
}

describe('one port, plain HTTP (the default)', () => {
  let api: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    api = await serve({});
  });
  afterAll(async () => {
    await api?.proc.kill9();
  });

  it('serves everything on PORT and logs no admin port', async () => {
    expect(api.line.adminPort).toBeUndefined();
    expect(api.line.tls).toBe(false);
    expect((await send(`${api.url}/metrics`)).status).toBe(200);
    expect((await send(`${api.url}/v1/admin/keys`, { key: ADMIN_KEY })).status).toBe(200);
    expect((await send(`${api.url}/v1/events`, { key: ADMIN_KEY, body: event() })).status).toBe(202);
  });

  it('puts the secure headers on every response, errors included, without HSTS', async () => {
    const replies = await Promise.all([
      send(`${api.url}/v1/events`, { key: ADMIN_KEY, body: event() }),
      send(`${api.url}/v1/events`, { body: event() }),
      send(`${api.url}/v1/events`, { key: ADMIN_KEY, body: { service: '' } }),
      send(`${api.url}/nowhere`),
      send(`${api.url}/health/live`),
      send(`${api.url}/metrics`),
    ]);
    expect(replies.map((r) => r.status)).toEqual([202, 401, 400, 404, 200, 200]);
    for (const reply of replies) expectSecureHeaders(reply, false);
  });
});

describe('ADMIN_PORT and TLS', () => {
  it('serves /metrics and /v1/admin/* only on ADMIN_PORT, the rest only on PORT', async () => {
    const api = await serve({ ADMIN_PORT: '0' });
    const before = (await env.pool.query('SELECT coalesce(max(id), 0)::int AS id FROM audit_log')).rows[0].id;
    try {
      const { url, adminUrl } = api;
      expect(adminUrl).toBeDefined();
      expect(api.line.adminPort).not.toBe(api.line.port);
      const admin = adminUrl as string;
      // The public port answers 404 before asking for a key: it does not tell admin routes exist.
      expect((await send(`${url}/metrics`)).status).toBe(404);
      expect((await send(`${url}/v1/admin/keys`)).status).toBe(404);
      expect((await send(`${url}/v1/admin/keys`, { key: ADMIN_KEY })).status).toBe(404);
      expect((await send(`${url}/v1/events`, { key: ADMIN_KEY, body: event() })).status).toBe(202);
      expect((await send(`${url}/health/ready`)).status).toBe(200);

      expect((await send(`${admin}/metrics`)).status).toBe(200);
      expect((await send(`${admin}/v1/admin/keys`, { key: ADMIN_KEY })).status).toBe(200);
      expect((await send(`${admin}/v1/admin/keys`)).status).toBe(401);
      expect((await send(`${admin}/v1/events`, { key: ADMIN_KEY, body: event() })).status).toBe(404);
      expect((await send(`${admin}/health/live`)).status).toBe(200);
      expectSecureHeaders(await send(`${admin}/metrics`), false);

      // Admin calls tried on the public port are in the audit log too, as 404s.
      const calls = await env.pool.query(
        `SELECT status FROM audit_log WHERE action = 'keys.list' AND id > $1 ORDER BY id`,
        [before],
      );
      expect(calls.rows.map((r) => r.status)).toEqual([404, 404, 200, 401]);

      expect(await api.proc.stop()).toBe(0);
      await expect(send(`${url}/health/live`)).rejects.toThrow();
      await expect(send(`${admin}/health/live`)).rejects.toThrow();
    } finally {
      await api.proc.kill9();
    }
  });

  it('speaks HTTPS on both ports with TLS_CERT_FILE and TLS_KEY_FILE, with HSTS', async () => {
    const api = await serve({
      ADMIN_PORT: '0',
      TLS_CERT_FILE: join(dir, 'cert.pem'),
      TLS_KEY_FILE: join(dir, 'key.pem'),
    });
    try {
      expect(api.line.tls).toBe(true);
      const admin = api.adminUrl as string;
      const accepted = await send(`${api.url}/v1/events`, { key: ADMIN_KEY, body: event() });
      expect(accepted.status).toBe(202);
      expectSecureHeaders(accepted, true);
      const keys = await send(`${admin}/v1/admin/keys`, { key: ADMIN_KEY });
      expect(keys.status).toBe(200);
      expectSecureHeaders(keys, true);
      expect((await send(`${api.url}/v1/admin/keys`, { key: ADMIN_KEY })).status).toBe(404);
      // Plain HTTP on a TLS port gets no answer.
      await expect(send(`${api.url.replace('https:', 'http:')}/health/live`)).rejects.toThrow();
      expect(await api.proc.stop()).toBe(0);
    } finally {
      await api.proc.kill9();
    }
  });

  it('stops at start, naming the variable, when a TLS file cannot be read', async () => {
    const res = await runTributary(
      ['serve'],
      env.env({ TLS_CERT_FILE: join(dir, 'missing.pem'), TLS_KEY_FILE: join(dir, 'key.pem') }),
    );
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('TLS_CERT_FILE');
  });
});
