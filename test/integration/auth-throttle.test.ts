/**
 * Failed authentications are throttled per client address: the count lives in Redis (every
 * API process shares it), a spent address is refused locally with no lookup, other
 * addresses and valid keys elsewhere are unaffected, and without Redis nothing is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferKeys } from '../../src/buffer/keys.ts';
import { FailedAuthThrottle } from '../../src/http/auth-throttle.ts';
import { generateKey } from '../../src/store/api-keys.repo.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { call, type Stack, startStack } from '../helpers/stack.ts';

const PER_MINUTE = 5;
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    env: { TRUST_PROXY: 'true', AUTH_FAILURES_PER_MINUTE: String(PER_MINUTE) },
  });
});
afterAll(async () => {
  await stack?.close();
});

const throttle = (redis = stack.env.redis) =>
  new FailedAuthThrottle({
    redis,
    keys: bufferKeys(`${stack.env.prefix}:unit`, 1),
    perMinute: PER_MINUTE,
    logger: silentLogger(),
  });

describe('the failed-authentication bucket (real Redis)', () => {
  it('allows N failures a minute per address, then refuses: locally here, from the shared count elsewhere', async () => {
    const here = throttle();
    const elsewhere = throttle();
    for (let i = 0; i < PER_MINUTE; i++) {
      expect(here.refusedFor('198.51.100.1')).toBeUndefined();
      expect(await here.failed('198.51.100.1')).toBeUndefined();
    }
    // Spent: this process refuses the address without asking Redis, for one token's time (60/5 s).
    const wait = here.refusedFor('198.51.100.1');
    expect(wait).toBeGreaterThanOrEqual(11);
    expect(wait).toBeLessThanOrEqual(12);
    // Another process has not seen it fail, but its first failure there is over the count.
    expect(elsewhere.refusedFor('198.51.100.1')).toBeUndefined();
    expect(await elsewhere.failed('198.51.100.1')).toBeGreaterThanOrEqual(11);
    expect(elsewhere.refusedFor('198.51.100.1')).toBeGreaterThanOrEqual(11);
    // Another address has its own count.
    expect(await here.failed('198.51.100.2')).toBeUndefined();
    expect(here.refusedFor('198.51.100.2')).toBeUndefined();
  });

  it('fails open: without Redis, failures are not counted and nothing is refused', async () => {
    const down = stack.env.redis.duplicate();
    down.disconnect();
    const t = throttle(down);
    for (let i = 0; i < PER_MINUTE * 2; i++) expect(await t.failed('198.51.100.3')).toBeUndefined();
    expect(t.refusedFor('198.51.100.3')).toBeUndefined();
  });
});

describe('failed authentication through HTTP (TRUST_PROXY, X-Forwarded-For)', () => {
  const from = (address: string, key: string) =>
    call(stack.url, '/v1/events?limit=1', { key, headers: { 'x-forwarded-for': address } });

  it('an address gets 429 auth_throttled after N failures, for any key; valid keys from other addresses still work', async () => {
    const created = await call(stack.url, '/v1/admin/keys', { body: { name: 'reader', scopes: ['read'] } });
    expect(created.status).toBe(201);
    const valid = created.body.key as string;

    for (let i = 0; i < PER_MINUTE; i++) {
      const res = await from('203.0.113.9', i % 2 ? generateKey() : 'not-even-a-key');
      expect(res.status).toBe(401);
    }
    const refused = await from('203.0.113.9', generateKey());
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('auth_throttled');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // A key this process has not accepted yet is refused from that address too.
    expect((await from('203.0.113.9', valid)).body.error.code).toBe('auth_throttled');

    // Elsewhere: the valid key works, an unknown key is a plain 401.
    expect((await from('203.0.113.10', valid)).status).toBe(200);
    expect((await from('203.0.113.10', generateKey())).status).toBe(401);
    // Once accepted here, the key works from the throttled address as well (a shared NAT).
    expect((await from('203.0.113.9', valid)).status).toBe(200);

    // A second API process shares the count: its first failure from the address is refused.
    const api2 = await stack.env.start('serve', {
      TRUST_PROXY: 'true',
      AUTH_FAILURES_PER_MINUTE: String(PER_MINUTE),
    });
    const second = await call(api2.url, '/v1/events?limit=1', {
      key: generateKey(),
      headers: { 'x-forwarded-for': '203.0.113.9' },
    });
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe('auth_throttled');
  });
});
