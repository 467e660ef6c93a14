import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCOPES, type Scope } from '../../src/store/api-keys.repo.ts';
import { ADMIN_KEY } from '../helpers/env.ts';
import { documentedFetch } from '../helpers/openapi.ts';
import { call, event, type Stack, startStack } from '../helpers/stack.ts';
import { waitUntilStored } from '../helpers/stored-once.ts';

/**
 * The scope × service matrix (ARCHITECTURE §3, §11). Every route and the scope it needs. `ok` lists what a key with that scope may get (a 2xx,
 * or a refusal about the request itself, never 401/403); `open` routes answer anyone,
 * `any key` ones any valid key. A new route is one line here.
 */
interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  /** Several: a key with any one of them. */
  scope: Scope | readonly Scope[] | 'open' | 'any key';
  ok: number[];
  body?: () => unknown;
  /** The service of the event an ingest route is sent. */
  service?: string;
  /** Segment routes (§12): a key bound to no service gets 403 service_required. */
  boundOnly?: true;
}
/** The service the bound keys may write and read, and one they may not. */
const A = 'matrix-a';
const B = 'matrix-b';
const MATRIX_WEBHOOK = {
  kind: 'webhook',
  service: A,
  secret: 'matrix-secret-0123456789',
  signatureHeader: 'X-Signature',
  idField: 'id',
  type: 'matrix.hook',
};
const ROUTES: Route[] = [
  // Once for the service the bound keys may write, once for another (§11).
  ...[A, B].flatMap((service): Route[] => [
    {
      method: 'POST',
      path: '/v1/events',
      scope: 'ingest',
      ok: [202],
      service,
      body: () => event({ service }),
    },
    {
      method: 'POST',
      path: '/v1/events/batch',
      scope: 'ingest',
      ok: [202],
      service,
      body: () => ({ events: [event({ service })] }),
    },
    {
      method: 'POST',
      path: '/v1/events/validate',
      scope: 'ingest',
      ok: [200],
      service,
      body: () => ({ events: [event({ service })] }),
    },
  ]),
  // Segment's Tracking API: calls go to the key's first service.
  ...['/v1/batch', '/v1/import'].map(
    (path): Route => ({
      method: 'POST',
      path,
      scope: 'ingest',
      ok: [200],
      boundOnly: true,
      body: () => ({ batch: [{ type: 'track', event: 'matrix', messageId: randomUUID() }] }),
    }),
  ),
  ...['track', 'identify', 'page', 'screen', 'group', 'alias'].map(
    (type): Route => ({
      method: 'POST',
      path: `/v1/${type}`,
      scope: 'ingest',
      ok: [200],
      boundOnly: true,
      body: () => ({
        event: 'matrix',
        userId: 'matrix-user',
        previousId: 'matrix-anon',
        messageId: randomUUID(),
      }),
    }),
  ),
  { method: 'GET', path: '/v1/events?limit=1', scope: 'read', ok: [200] },
  // A stream never ends: an unknown outcome shows the scope check without opening one (live-view.test.ts opens them).
  { method: 'GET', path: '/v1/events/live?outcome=none', scope: 'read', ok: [400] },
  { method: 'GET', path: '/v1/admin/keys', scope: 'admin', ok: [200] },
  // Sources (§15); this stack has no METADATA_ENCRYPTION_KEYS, so creating one is 409.
  { method: 'GET', path: '/v1/admin/sources', scope: 'admin', ok: [200] },
  {
    method: 'POST',
    path: '/v1/admin/sources',
    scope: 'admin',
    ok: [409],
    body: () => ({ ...MATRIX_WEBHOOK, name: `matrix-${randomUUID()}` }),
  },
  {
    method: 'POST',
    path: '/v1/admin/sources/test',
    scope: 'admin',
    ok: [200],
    body: () => ({ ...MATRIX_WEBHOOK, sample: { id: 'w-1' } }),
  },
  { method: 'GET', path: `/v1/admin/sources/${randomUUID()}`, scope: 'admin', ok: [404] },
  {
    method: 'PATCH',
    path: `/v1/admin/sources/${randomUUID()}`,
    scope: 'admin',
    ok: [404],
    body: () => ({ paused: true }),
  },
  { method: 'DELETE', path: `/v1/admin/sources/${randomUUID()}`, scope: 'admin', ok: [404] },
  // Materialisations (§17): a bad body shows the scope check without building one (materialize.test.ts builds them).
  { method: 'GET', path: '/v1/admin/materializations', scope: 'admin', ok: [200] },
  {
    method: 'PUT',
    path: '/v1/admin/materializations/matrix',
    scope: 'admin',
    ok: [400],
    body: () => ({ promoteMaxColumns: -1 }),
  },
  { method: 'GET', path: '/v1/admin/materializations/matrix', scope: 'admin', ok: [404] },
  { method: 'POST', path: '/v1/admin/materializations/matrix/rebuild', scope: 'admin', ok: [404] },
  {
    method: 'POST',
    path: '/v1/admin/materializations/matrix/rebuild',
    scope: 'admin',
    ok: [400],
    body: () => ({ archivedFrom: '2026-13' }),
  },
  { method: 'DELETE', path: '/v1/admin/materializations/matrix', scope: 'admin', ok: [404] },
  // Signed by the source's secret instead of a key.
  {
    method: 'POST',
    path: `/v1/webhooks/${randomUUID()}`,
    scope: 'open',
    ok: [404],
    body: () => ({ id: 'w-1' }),
  },
  {
    method: 'POST',
    path: '/v1/admin/keys',
    scope: 'admin',
    ok: [201],
    body: () => ({ name: 'matrix', scopes: ['read'] }),
  },
  { method: 'DELETE', path: `/v1/admin/keys/${randomUUID()}`, scope: 'admin', ok: [404] },
  { method: 'POST', path: `/v1/admin/keys/${randomUUID()}/rotate`, scope: 'admin', ok: [404] },
  {
    method: 'PATCH',
    path: `/v1/admin/keys/${randomUUID()}`,
    scope: 'admin',
    ok: [404],
    body: () => ({ services: [A] }),
  },
  // Tracking plans (§14) of service A, which the bound keys may use: written first, then read.
  {
    method: 'PUT',
    path: `/v1/schemas/${A}/matrix.type`,
    scope: 'admin',
    ok: [200],
    body: () => ({ schema: { type: 'object' } }),
  },
  { method: 'PUT', path: `/v1/schemas/${A}`, scope: 'admin', ok: [200], body: () => ({ mode: 'warn' }) },
  { method: 'GET', path: '/v1/schemas', scope: ['read', 'admin'], ok: [200] },
  { method: 'GET', path: `/v1/schemas/${A}`, scope: ['read', 'admin'], ok: [200] },
  { method: 'GET', path: `/v1/schemas/${A}/matrix.type`, scope: ['read', 'admin'], ok: [200] },
  { method: 'DELETE', path: `/v1/schemas/${A}/matrix.never`, scope: 'admin', ok: [404] },
  { method: 'POST', path: '/v1/admin/dead-letter/replay', scope: 'admin', ok: [200] },
  // The first call starts a pass; while it runs, the next ones are told so.
  { method: 'POST', path: '/v1/admin/retention/run', scope: 'admin', ok: [202, 409] },
  { method: 'GET', path: '/v1/admin/retention/runs', scope: 'admin', ok: [200] },
  { method: 'GET', path: `/v1/admin/retention/runs/${randomUUID()}`, scope: 'admin', ok: [404] },
  { method: 'GET', path: '/v1/admin/archives', scope: 'admin', ok: [200] },
  { method: 'GET', path: '/v1/admin/audit', scope: 'admin', ok: [200] },
  { method: 'PUT', path: '/v1/users/matrix-user/opt-out', scope: 'dsar', ok: [200] },
  { method: 'DELETE', path: '/v1/users/matrix-user/opt-out', scope: 'dsar', ok: [200] },
  { method: 'DELETE', path: '/v1/users/matrix-user/events', scope: 'dsar', ok: [202] },
  { method: 'GET', path: `/v1/dsar/${randomUUID()}`, scope: 'dsar', ok: [404] },
  { method: 'GET', path: '/v1/users/matrix-user/events/export', scope: 'dsar', ok: [200] },
  { method: 'GET', path: '/v1/whoami', scope: 'any key', ok: [200] },
  // Not a route, but under /v1: a key is needed even to learn that.
  { method: 'GET', path: '/v1/no-such-route', scope: 'any key', ok: [404] },
  { method: 'GET', path: '/health/live', scope: 'open', ok: [200] },
  { method: 'GET', path: '/health/ready', scope: 'open', ok: [200] },
  { method: 'GET', path: '/health', scope: ['read', 'admin'], ok: [200] },
  { method: 'GET', path: '/health/buffer', scope: ['read', 'admin'], ok: [200] },
  { method: 'GET', path: '/health/database', scope: ['read', 'admin'], ok: [200, 503] },
  { method: 'GET', path: '/health/business', scope: ['read', 'admin'], ok: [200] },
  { method: 'GET', path: '/metrics', scope: 'open', ok: [200] },
  { method: 'GET', path: '/openapi.json', scope: 'open', ok: [200] },
  // The console's page: 503 console_not_built where this run did not build it (`npm run build`).
  { method: 'GET', path: '/', scope: 'open', ok: [200, 503] },
  { method: 'GET', path: '/assets/main-NOSUCHFILE.js', scope: 'open', ok: [404] },
];

let stack: Stack;
let dir: string;
/**
 * Callers: no key, a wrong key, and stored keys with exactly one scope each, once for every
 * service (`ingest`) and once bound to service A (`ingest@matrix-a`).
 */
const callers: Record<string, string | null> = { none: null, bad: 'trb_not-a-key-000000000000000000000000' };
beforeAll(async () => {
  // The retention pass the matrix starts archives nothing, but keep it out of the checkout.
  dir = mkdtempSync(join(tmpdir(), 'tributary-scopes-'));
  stack = await startStack({
    env: { ARCHIVE_DIR: join(dir, 'archive'), ARCHIVE_WORK_DIR: join(dir, 'work') },
    workers: 1,
  });
  for (const scope of SCOPES) {
    for (const services of [undefined, [A]]) {
      const res = await call(stack.url, '/v1/admin/keys', {
        body: { name: `only-${scope}`, scopes: [scope], ...(services ? { services } : {}) },
      });
      expect(res.status).toBe(201);
      expect(res.body.services).toEqual(services ?? []);
      callers[services ? `${scope}@${A}` : scope] = res.body.key;
    }
  }
});
afterAll(async () => {
  await stack?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const scopeOf = (caller: string) => caller.split('@')[0] as Scope;
const boundTo = (caller: string) => caller.split('@')[1];

function expected(route: Route, caller: string): number[] {
  if (route.scope === 'open') return route.ok;
  if (caller === 'none' || caller === 'bad') return [401];
  const allowed = typeof route.scope === 'string' ? [route.scope] : route.scope;
  if (!allowed.includes(scopeOf(caller)) && route.scope !== 'any key') return [403];
  if (route.boundOnly && boundTo(caller) === undefined) return [403];
  // A single event of a service the key is not bound to: 403 service_not_allowed.
  const refused =
    route.service !== undefined && boundTo(caller) !== undefined && boundTo(caller) !== route.service;
  return refused && route.path === '/v1/events' ? [403] : route.ok;
}

describe('scopes and services on every route', () => {
  it('the matrix lists every operation of the OpenAPI document', async () => {
    const doc = await call(stack.url, '/openapi.json', { key: null });
    const missing: string[] = [];
    for (const [template, operations] of Object.entries(doc.body.paths as Record<string, object>)) {
      const pattern = new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`);
      for (const method of Object.keys(operations)) {
        const row = ROUTES.find(
          (r) => r.method === method.toUpperCase() && pattern.test(r.path.split('?')[0] ?? ''),
        );
        if (!row) missing.push(`${method.toUpperCase()} ${template}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('answers each caller on each route as its scope and services allow', async () => {
    const mismatches: string[] = [];
    for (const route of ROUTES) {
      for (const [caller, key] of Object.entries(callers)) {
        const res = await call(stack.url, route.path, { method: route.method, key, body: route.body?.() });
        const want = expected(route, caller);
        const where = `${route.method} ${route.path}${route.service ? ` (${route.service})` : ''} as ${caller}`;
        if (!want.includes(res.status)) mismatches.push(`${where}: ${res.status}, want ${want.join('|')}`);
        if (res.status === 401) expect(res.body.error.code).toBe('unauthorized');
        if (res.status === 403) {
          const scopeOk = route.scope === 'any key' || [route.scope].flat().includes(scopeOf(caller));
          const serviceCode = route.boundOnly ? 'service_required' : 'service_not_allowed';
          expect(res.body.error.code, where).toBe(scopeOk ? serviceCode : 'forbidden');
        }
        // In a batch (and its dry run), an event of a service the key may not write is rejected on its own.
        const batchLike = route.path === '/v1/events/batch' || route.path === '/v1/events/validate';
        if (batchLike && res.status === route.ok[0]) {
          const refused = boundTo(caller) !== undefined && boundTo(caller) !== route.service;
          if (refused)
            expect(res.body.rejected, where).toEqual([
              expect.objectContaining({ index: 0, code: 'service_not_allowed' }),
            ]);
          else expect(res.body.accepted + res.body.duplicates, where).toBe(1);
        }
        if (route.boundOnly && res.status === 200)
          expect(res.body, where).toMatchObject({ accepted: 1, rejected: [] });
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('reads and exports show a bound key only its services’ events, whatever the filters say', async () => {
    const subject = `matrix-subject-${randomUUID()}`;
    const sent = [event({ service: A, userId: subject }), event({ service: B, userId: subject })];
    const res = await call(stack.url, '/v1/events/batch', { body: { events: sent } });
    expect(res.body.accepted).toBe(2);
    await waitUntilStored(
      stack.env.pool,
      sent.map((e) => String(e.id)),
    );

    const read = async (caller: string, query: string) => {
      const page = await call(stack.url, `/v1/events?userId=${subject}${query}`, {
        key: callers[caller] ?? null,
      });
      expect(page.status).toBe(200);
      return (page.body.events as { service: string }[]).map((e) => e.service).sort();
    };
    for (const caller of ['read', `read@${A}`]) {
      const bound = boundTo(caller) !== undefined;
      expect(await read(caller, '')).toEqual(bound ? [A] : [A, B]);
      expect(await read(caller, `&service=${B}`)).toEqual(bound ? [] : [B]);
      expect(await read(caller, `&service=${A}`)).toEqual([A]);
    }

    const exported = async (caller: string) => {
      const out = await documentedFetch(`${stack.url}/v1/users/${subject}/events/export`, {
        headers: { 'x-api-key': callers[caller] ?? '' },
      });
      expect(out.status).toBe(200);
      return (await out.text())
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { service: string }).service)
        .sort();
    };
    expect(await exported('dsar')).toEqual([A, B]);
    expect(await exported(`dsar@${A}`)).toEqual([A]);
  });

  it('never logs a key', () => {
    const logs = JSON.stringify(stack.api.logs);
    for (const key of [ADMIN_KEY, ...Object.values(callers)]) {
      if (key) expect(logs).not.toContain(key.slice(8));
    }
  });
});
