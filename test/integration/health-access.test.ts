import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCOPES } from '../../src/store/api-keys.repo.ts';
import { ADMIN_KEY, createTestEnv } from '../helpers/env.ts';
import { call } from '../helpers/stack.ts';

// ARCHITECTURE §11: /health/live and /health/ready answer anyone with a bare status; the
// details need a key with `read` or `admin`, and with ADMIN_PORT set live only there.

const env = createTestEnv();
const DETAILS = ['/health', '/health/buffer', '/health/database', '/health/business'];
/** A stored key per scope. */
const keys: Record<string, string> = {};
let url: string;

beforeAll(async () => {
  await env.migrate();
  url = (await env.start('serve')).url;
  for (const scope of SCOPES) {
    const res = await call(url, '/v1/admin/keys', { body: { name: `health-${scope}`, scopes: [scope] } });
    expect(res.status).toBe(201);
    keys[scope] = res.body.key;
  }
  // A service the business summary would list, so that leaking it can be seen.
  await call(url, '/v1/events', {
    body: { service: 'secret-service', type: 't' },
  });
});
afterAll(() => env.cleanup());

describe('health without a key', () => {
  it('live and ready answer a bare status, nothing more', async () => {
    const live = await call(url, '/health/live', { key: null });
    expect([live.status, live.body]).toEqual([200, { status: 'ok' }]);
    const ready = await call(url, '/health/ready', { key: null });
    expect([ready.status, ready.body]).toEqual([200, { status: 'ok' }]);
  });

  it('the details answer 401, and say nothing about the system', async () => {
    for (const path of DETAILS) {
      const res = await call(url, path, { key: null });
      expect([path, res.status, res.body.error.code]).toEqual([path, 401, 'unauthorized']);
      expect(JSON.stringify(res.body)).not.toMatch(/secret-service|pid|workers|partitions/);
    }
    const wrong = await call(url, '/health', { key: 'trb_not-a-key-000000000000000000000000' });
    expect(wrong.status).toBe(401);
  });
});

describe('health with a key', () => {
  it('read and admin keys get the details; ingest and dsar keys get 403', async () => {
    for (const path of DETAILS) {
      for (const key of [keys.read, keys.admin, ADMIN_KEY]) {
        const res = await call(url, path, { key });
        expect([path, res.status]).toEqual([path, 200]);
        expect(res.body.status).toEqual(expect.any(String));
      }
      for (const scope of ['ingest', 'dsar']) {
        const res = await call(url, path, { key: keys[scope] });
        expect([path, scope, res.status, res.body.error.code]).toEqual([path, scope, 403, 'forbidden']);
      }
    }
    const buffer = await call(url, '/health/buffer', { key: keys.read });
    expect(buffer.body.partitions).toHaveLength(8);
  });
});

describe('health with ADMIN_PORT set', () => {
  it('serves the details only on the admin port; live and ready stay public', async () => {
    const api = await env.start('serve', { ADMIN_PORT: '0' });
    const listening = await api.waitForLog((l) => l.msg === 'listening');
    const admin = `http://127.0.0.1:${listening.adminPort}`;
    for (const path of DETAILS) {
      // Not there at all on the public port, key or no key.
      expect([path, (await call(api.url, path, { key: keys.admin })).status]).toEqual([path, 404]);
      expect([path, (await call(api.url, path, { key: null })).status]).toEqual([path, 404]);
      expect([path, (await call(admin, path, { key: keys.read })).status]).toEqual([path, 200]);
      expect([path, (await call(admin, path, { key: null })).status]).toEqual([path, 401]);
    }
    expect((await call(api.url, '/health/ready', { key: null })).body).toEqual({ status: 'ok' });
    expect((await call(api.url, '/health/live', { key: null })).status).toBe(200);
    expect((await call(admin, '/health/live', { key: null })).status).toBe(200);
  });
});
