import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCOPES, type Scope } from '../../src/store/api-keys.repo.ts';
import { ADMIN_KEY } from '../helpers/env.ts';
import { call, event, type Stack, startStack } from '../helpers/stack.ts';

/**
 * Every route and the scope it needs. `ok` lists what a key with that scope may get (a 2xx,
 * or a refusal about the request itself, never 401/403); `open` routes answer anyone,
 * `any key` ones any valid key. A new route is one line here.
 */
interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  /** Several: a key with any one of them. */
  scope: Scope | readonly Scope[] | 'open' | 'any key';
  ok: number[];
  body?: () => unknown;
}
const ROUTES: Route[] = [
  { method: 'POST', path: '/v1/events', scope: 'ingest', ok: [202], body: () => event() },
  {
    method: 'POST',
    path: '/v1/events/batch',
    scope: 'ingest',
    ok: [202],
    body: () => ({ events: [event()] }),
  },
  { method: 'GET', path: '/v1/events?limit=1', scope: 'read', ok: [200] },
  { method: 'GET', path: '/v1/admin/keys', scope: 'admin', ok: [200] },
  {
    method: 'POST',
    path: '/v1/admin/keys',
    scope: 'admin',
    ok: [201],
    body: () => ({ name: 'matrix', scopes: ['read'] }),
  },
  { method: 'DELETE', path: `/v1/admin/keys/${randomUUID()}`, scope: 'admin', ok: [404] },
  { method: 'POST', path: `/v1/admin/keys/${randomUUID()}/rotate`, scope: 'admin', ok: [404] },
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
  // Not a route, but under /v1: a key is needed even to learn that.
  { method: 'GET', path: '/v1/no-such-route', scope: 'any key', ok: [404] },
  { method: 'GET', path: '/health/live', scope: 'open', ok: [200] },
  { method: 'GET', path: '/health/ready', scope: 'open', ok: [200] },
  { method: 'GET', path: '/health', scope: ['read', 'admin'], ok: [200] },
  { method: 'GET', path: '/health/buffer', scope: ['read', 'admin'], ok: [200] },
  { method: 'GET', path: '/health/database', scope: ['read', 'admin'], ok: [200, 503] },
  { method: 'GET', path: '/health/business', scope: ['read', 'admin'], ok: [200] },
  { method: 'GET', path: '/metrics', scope: 'open', ok: [200] },
];

let stack: Stack;
let dir: string;
/** Callers: no key, a wrong key, and a stored key with exactly one scope each. */
const callers: Record<string, string | null> = { none: null, bad: 'trb_not-a-key-000000000000000000000000' };
beforeAll(async () => {
  // The retention pass the matrix starts archives nothing, but keep it out of the checkout.
  dir = mkdtempSync(join(tmpdir(), 'tributary-scopes-'));
  stack = await startStack({
    env: { ARCHIVE_DIR: join(dir, 'archive'), ARCHIVE_WORK_DIR: join(dir, 'work') },
  });
  for (const scope of SCOPES) {
    const res = await call(stack.url, '/v1/admin/keys', { body: { name: `only-${scope}`, scopes: [scope] } });
    expect(res.status).toBe(201);
    callers[scope] = res.body.key;
  }
});
afterAll(async () => {
  await stack?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function expected(route: Route, caller: string): number[] {
  if (route.scope === 'open') return route.ok;
  if (caller === 'none' || caller === 'bad') return [401];
  const allowed = typeof route.scope === 'string' ? [route.scope] : route.scope;
  return allowed.includes(caller as Scope) || route.scope === 'any key' ? route.ok : [403];
}

describe('scopes on every route', () => {
  it('answers each caller on each route as its scope allows', async () => {
    const mismatches: string[] = [];
    for (const route of ROUTES) {
      for (const [caller, key] of Object.entries(callers)) {
        const res = await call(stack.url, route.path, { method: route.method, key, body: route.body?.() });
        const want = expected(route, caller);
        if (!want.includes(res.status)) {
          mismatches.push(
            `${route.method} ${route.path} as ${caller}: ${res.status}, want ${want.join('|')}`,
          );
        }
        if (res.status === 401 || res.status === 403) {
          expect(res.body.error.code).toBe(res.status === 401 ? 'unauthorized' : 'forbidden');
        }
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('never logs a key', () => {
    const logs = JSON.stringify(stack.api.logs);
    for (const key of [ADMIN_KEY, ...Object.values(callers)]) {
      if (key) expect(logs).not.toContain(key.slice(8));
    }
  });
});
