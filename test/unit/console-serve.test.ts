import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { CONSOLE_CSP } from '../../src/console/serve.ts';
import { createApp } from '../../src/http/app.ts';
import { NOOP_ADMIN_KEY, noopDeps, scopedKey } from '../helpers/noop-deps.ts';
import { checkResponse } from '../helpers/openapi.ts';

// How the API serves the web console (src/console/serve.ts) and GET /v1/whoami, through
// app.request() on a console "built" into a temporary directory.

const SCRIPT = 'main-ABCD1234.js';
const STYLE = 'main-EFGH5678.css';
const HTML = `<!doctype html><link rel="stylesheet" href="/assets/${STYLE}"><script type="module" src="/assets/${SCRIPT}"></script>`;
const JS = 'console.log("tributary console");'.repeat(50);

interface ErrorBody {
  error: { code: string; message: string };
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A dist directory; with `built`, holding a page and its two assets. */
function dist(built: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), 'tributary-console-'));
  dirs.push(dir);
  if (built) writeBuild(dir);
  return dir;
}
function writeBuild(dir: string): void {
  mkdirSync(join(dir, 'assets'), { recursive: true });
  writeFileSync(join(dir, 'assets', SCRIPT), JS);
  writeFileSync(join(dir, 'assets', STYLE), 'body{margin:0}');
  writeFileSync(join(dir, 'index.html'), HTML);
}

/** The app on a console in `consoleDir`; every answer must be one /openapi.json describes. */
const appOn = (consoleDir: string) => {
  const app = createApp(noopDeps({ consoleDir }));
  return {
    async request(path: string, init: RequestInit = {}, env?: Record<string, unknown>): Promise<Response> {
      const res = await app.request(path, init, env as never);
      const contentType = res.headers.get('content-type');
      const text = contentType?.includes('json') ? await res.clone().text() : undefined;
      checkResponse({ method: 'GET', path, status: res.status, contentType, text });
      return res;
    },
  };
};

describe('the console page and its assets', () => {
  it('serves the page to anyone, revalidated at every load, under the console’s strict policy', async () => {
    const res = await appOn(dist(true)).request('/');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(await res.text()).toBe(HTML);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toBe(CONSOLE_CSP);
    const directives = Object.fromEntries(
      csp.split(';').map((d) => {
        const [name = '', ...values] = d.trim().split(/\s+/);
        return [name, values.join(' ')];
      }),
    );
    expect(directives).toMatchObject({
      'default-src': "'none'",
      'script-src': "'self'",
      'style-src': "'self'",
      'connect-src': "'self'",
      'base-uri': "'none'",
      'frame-ancestors': "'none'",
    });
    expect(csp).not.toMatch(/unsafe-|\*/);
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('serves assets for a year, gzipped when asked, and nothing that was not built', async () => {
    const app = appOn(dist(true));
    const plain = await app.request(`/assets/${SCRIPT}`);
    expect(plain.status).toBe(200);
    expect(plain.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(plain.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(plain.headers.get('vary')).toBe('Accept-Encoding');
    expect(plain.headers.get('content-encoding')).toBeNull();
    expect(await plain.text()).toBe(JS);

    const gzipped = await app.request(`/assets/${SCRIPT}`, { headers: { 'accept-encoding': 'gzip, br' } });
    expect(gzipped.headers.get('content-encoding')).toBe('gzip');
    const bytes = Buffer.from(await gzipped.arrayBuffer());
    expect(bytes.length).toBeLessThan(JS.length / 5);
    expect(gunzipSync(bytes).toString()).toBe(JS);

    const css = await app.request(`/assets/${STYLE}`);
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');

    for (const path of ['/assets/main-00000000.js', '/assets/..%2Findex.html', '/assets/', '/index.html']) {
      const res = await app.request(path);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as ErrorBody).error.code, path).toBe('not_found');
    }
  });

  it('keeps every API response under default-src none', async () => {
    const app = appOn(dist(true));
    for (const path of ['/health/live', '/openapi.json', '/v1/whoami']) {
      const res = await app.request(path, { headers: { 'x-api-key': NOOP_ADMIN_KEY } });
      expect(res.headers.get('content-security-policy'), path).toBe(
        "default-src 'none'; frame-ancestors 'none'",
      );
    }
  });

  it('answers console_not_built with the command while nothing is built, and serves a build made later', async () => {
    const dir = dist(false);
    const app = appOn(dir);
    const res = await app.request('/');
    expect(res.status).toBe(503);
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe('console_not_built');
    expect(body.error.message).toContain('npm run build');
    expect((await app.request(`/assets/${SCRIPT}`)).status).toBe(404);

    writeBuild(dir);
    expect((await app.request('/')).status).toBe(200);
    expect((await app.request(`/assets/${SCRIPT}`)).status).toBe(200);
  });

  it('with ADMIN_PORT, serves the page, its assets and whoami on both listeners', async () => {
    const app = appOn(dist(true));
    for (const listener of ['public', 'admin']) {
      for (const path of ['/', `/assets/${SCRIPT}`, '/v1/whoami']) {
        const res = await app.request(path, { headers: { 'x-api-key': NOOP_ADMIN_KEY } }, { listener });
        expect(res.status, `${path} on ${listener}`).toBe(200);
      }
    }
  });
});

describe('GET /v1/whoami', () => {
  const whoami = async (key: string | null) => {
    const res = await createApp(noopDeps()).request('/v1/whoami', {
      headers: key === null ? {} : { authorization: `Bearer ${key}` },
    });
    const text = await res.text();
    checkResponse({
      method: 'GET',
      path: '/v1/whoami',
      status: res.status,
      contentType: res.headers.get('content-type'),
      text,
    });
    return { status: res.status, body: JSON.parse(text) };
  };

  it('tells any key its name, scopes and services', async () => {
    expect(await whoami(NOOP_ADMIN_KEY)).toEqual({
      status: 200,
      body: {
        keyId: 'admin-bootstrap',
        name: 'ADMIN_API_KEY',
        scopes: ['ingest', 'read', 'dsar', 'admin'],
        services: [],
      },
    });
    const none = await whoami(scopedKey('none'));
    expect(none.status).toBe(200);
    expect(none.body).toMatchObject({ name: 'none', scopes: [], services: [] });
  });

  it('refuses a missing or unknown key', async () => {
    for (const key of [null, 'trb_not-a-key']) {
      const res = await whoami(key);
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('unauthorized');
    }
  });
});
