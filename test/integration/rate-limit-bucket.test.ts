import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { bufferKeys } from '../../src/buffer/keys.ts';
import {
  type RateLimitRedis,
  RedisRateLimiter,
  registerRateLimitScript,
} from '../../src/http/middleware/rate-limit.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { createTestEnv, type TestEnv } from '../helpers/env.ts';

// The bucket arithmetic of http/middleware/rate-limit.lua, run by real Redis with the clock passed in.
let env: TestEnv;
let redis: RateLimitRedis;
let now = 0;
let limiter: RedisRateLimiter;
const keys = () => bufferKeys(env.prefix, 1);
beforeAll(async () => {
  env = createTestEnv();
  await env.redis.ping();
  redis = registerRateLimitScript(env.redis);
  limiter = new RedisRateLimiter({ redis: env.redis, keys: keys(), logger: silentLogger(), now: () => now });
});
afterAll(async () => {
  await env?.cleanup();
});

let n = 0;
/** A fresh key id per test, at a fresh point in time. */
function fresh(): string {
  now = 1_750_000_000_000 + n * 10_000_000;
  return `key-${n++}`;
}
/** The raw script reply of a call for one token: [allowed, remaining, retryAfterMs, resetMs] (`taken` left out). */
const raw = async (keyId: string, limit: number) =>
  (await redis.tributaryRateLimit(keys().rateLimit(keyId), limit, 60_000, now, 1)).slice(0, 4) as [
    number,
    number,
    number,
    number,
  ];
/** A call for `cost` tokens wanting up to `wanted`: the whole reply, `taken` last. */
const lease = (keyId: string, limit: number, cost: number, wanted: number) =>
  redis.tributaryRateLimit(keys().rateLimit(keyId), limit, 60_000, now, cost, wanted);

describe('rate-limit bucket (Lua, real Redis)', () => {
  it('allows a full minute of requests at once, then one per interval', async () => {
    const id = fresh();
    for (let i = 1; i <= 600; i++) {
      const [allowed, remaining] = await raw(id, 600);
      expect([allowed, remaining]).toEqual([1, 600 - i]);
    }
    // Empty: the next token comes in 60000/600 = 100 ms; the bucket is full again in 60 s.
    expect(await raw(id, 600)).toEqual([0, 0, 100, 60_000]);
    now += 99;
    expect(await raw(id, 600)).toEqual([0, 0, 1, 59_901]);
    now += 1;
    expect(await raw(id, 600)).toEqual([1, 0, 0, 60_000]);
    expect((await raw(id, 600))[0]).toBe(0);
    // Refused requests cost nothing: after 1 s there are 10 tokens, not fewer.
    now += 1_000;
    for (let i = 9; i >= 0; i--) expect(await raw(id, 600)).toEqual([1, i, 0, 60_000 - i * 100]);
    expect((await raw(id, 600))[0]).toBe(0);
  });

  it('refills completely after a quiet minute, and never holds more than the limit', async () => {
    const id = fresh();
    for (let i = 0; i < 10; i++) await raw(id, 10);
    expect((await raw(id, 10))[0]).toBe(0);
    now += 60_000;
    expect(await raw(id, 10)).toEqual([1, 9, 0, 6_000]);
    now += 3_600_000;
    expect(await raw(id, 10)).toEqual([1, 9, 0, 6_000]);
  });

  it('keeps fractions of an interval (7 per minute: one every 8571.43 ms)', async () => {
    const id = fresh();
    for (let i = 0; i < 7; i++) expect((await raw(id, 7))[0]).toBe(1);
    now += 8_571;
    expect(await raw(id, 7)).toEqual([0, 0, 1, 51_429]);
    now += 1;
    expect((await raw(id, 7))[0]).toBe(1);
    // Seven intervals later, seven more, not six or eight: no rounding drift.
    now += 7 * 8_571.428_571_428_6;
    let allowed = 0;
    for (let i = 0; i < 10; i++) allowed += (await raw(id, 7))[0];
    expect(allowed).toBe(7);
  });

  it('stores one value per key under the prefix with a hash tag, expiring when the bucket is full', async () => {
    const id = fresh();
    await raw(id, 600);
    const key = keys().rateLimit(id);
    expect(key).toBe(`${env.prefix}:ratelimit:{${id}}`);
    expect(await env.redis.type(key)).toBe('string');
    expect(await env.redis.pttl(key)).toBeGreaterThan(0);
    expect(await env.redis.pttl(key)).toBeLessThanOrEqual(100);
    for (let i = 0; i < 599; i++) await raw(id, 600);
    expect(await env.redis.pttl(key)).toBeGreaterThan(59_000);
    expect(await env.redis.pttl(key)).toBeLessThanOrEqual(60_000);
  });

  it('keeps keys apart', async () => {
    const a = fresh();
    const b = `${a}-other`;
    await raw(a, 1);
    expect((await raw(a, 1))[0]).toBe(0);
    expect(await raw(b, 1)).toEqual([1, 0, 0, 60_000]);
  });

  it('turns the reply into whole seconds for the headers', async () => {
    const id = fresh();
    expect(await limiter.consume(id, 2)).toEqual({
      allowed: true,
      limit: 2,
      remaining: 1,
      resetS: 30,
      retryAfterS: 1,
    });
    await limiter.consume(id, 2);
    now += 250;
    // The next token in 29.75 s: Retry-After rounds up, never to 0.
    expect(await limiter.consume(id, 2)).toEqual({
      allowed: false,
      limit: 2,
      remaining: 0,
      resetS: 60,
      retryAfterS: 30,
    });
  });

  it('refuses a refused key again without asking Redis until its next token is due', async () => {
    const id = fresh();
    await limiter.consume(id, 1);
    expect(await limiter.consume(id, 1)).toMatchObject({ allowed: false, retryAfterS: 60 });
    // With the bucket gone from Redis, only this process's memory can still refuse.
    await env.redis.del(keys().rateLimit(id));
    now += 59_000;
    expect(await limiter.consume(id, 1)).toMatchObject({ allowed: false, retryAfterS: 1, resetS: 1 });
    now += 1_000;
    expect(await limiter.consume(id, 1)).toMatchObject({ allowed: true, remaining: 0 });
  });

  it("uses Redis's own clock when none is passed in", async () => {
    const id = fresh();
    const serverClock = new RedisRateLimiter({ redis: env.redis, keys: keys(), logger: silentLogger() });
    expect(await serverClock.consume(id, 3)).toMatchObject({ allowed: true, remaining: 2 });
    expect(await serverClock.consume(id, 3)).toMatchObject({ allowed: true, remaining: 1 });
    const stored = Number(await env.redis.get(keys().rateLimit(id)));
    const [seconds] = await env.redis.time();
    // The bucket is full again two intervals (40 s) after Redis's now.
    expect(Math.abs(stored - Number(seconds) * 1000 - 40_000)).toBeLessThan(2_000);
  });

  it('takes up to the wanted tokens beyond the cost, as many as the bucket holds, and none when it lacks the cost', async () => {
    const id = fresh();
    // 600 a minute: a full bucket holds 600.
    expect(await lease(id, 600, 1, 250)).toEqual([1, 350, 0, 25_000, 250]);
    expect(await lease(id, 600, 100, 400)).toEqual([1, 0, 0, 60_000, 350]);
    expect(await lease(id, 600, 1, 50)).toEqual([0, 0, 100, 60_000, 0]);
    now += 1_000;
    // Ten tokens back: a cost of 20 is refused whole, not granted in part.
    expect((await lease(id, 600, 20, 20))[0]).toBe(0);
    expect(await lease(id, 600, 5, 50)).toEqual([1, 0, 0, 60_000, 10]);
  });

  it('spends a busy key’s leased tokens locally: far fewer Redis calls, and never more than the limit', async () => {
    const id = fresh();
    const node = new RedisRateLimiter({
      redis: env.redis,
      keys: keys(),
      logger: silentLogger(),
      now: () => now,
    });
    const calls = vi.spyOn(redis, 'tributaryRateLimit');
    try {
      // 60,000 a minute (1,000/s): a lease lasts 100 ms at the key's pace, at most 100 tokens.
      let allowed = 0;
      const first = now + 1;
      for (let i = 0; i < 3_000; i++) {
        now += 1;
        if ((await node.consume(id, 60_000))?.allowed) allowed++;
      }
      expect(allowed).toBe(3_000);
      expect(calls.mock.calls.length).toBeLessThan(100);
      // What left the bucket (it started full at the first call and refills 1 per ms): what
      // was spent here plus at most one lease unspent.
      const [, left] = await lease(id, 60_000, 1, 1);
      const taken = 60_000 + (now - first) - 1 - left;
      expect(taken).toBeGreaterThanOrEqual(3_000);
      expect(taken).toBeLessThanOrEqual(3_000 + 100);
    } finally {
      calls.mockRestore();
    }
  });

  it('shares one limit between nodes: together they let through at most the bucket, and lose at most a lease each', async () => {
    const id = fresh();
    const a = new RedisRateLimiter({
      redis: env.redis,
      keys: keys(),
      logger: silentLogger(),
      now: () => now,
    });
    const b = new RedisRateLimiter({
      redis: env.redis,
      keys: keys(),
      logger: silentLogger(),
      now: () => now,
    });
    // 6,000 a minute: a full bucket of 6,000 and leases of at most 10. The clock stands still
    // (a burst), so nothing refills: exactly the bucket can go through.
    let allowed = 0;
    for (let i = 0; i < 7_000; i++) {
      const d = await (i % 3 === 0 ? b : a).consume(id, 6_000);
      if (d?.allowed) allowed++;
    }
    expect(allowed).toBeLessThanOrEqual(6_000);
    expect(allowed).toBeGreaterThanOrEqual(6_000 - 2 * 10);
  });

  it('has requests arriving during a lease call wait for it instead of calling Redis each', async () => {
    const id = fresh();
    const node = new RedisRateLimiter({
      redis: env.redis,
      keys: keys(),
      logger: silentLogger(),
      now: () => now,
    });
    // A pace first: 100 requests over 100 ms.
    for (let i = 0; i < 100; i++) {
      now += 1;
      await node.consume(id, 600_000);
    }
    const calls = vi.spyOn(redis, 'tributaryRateLimit');
    try {
      now += 2_000; // the lease is gone
      const decisions = await Promise.all(Array.from({ length: 50 }, () => node.consume(id, 600_000)));
      expect(decisions.every((d) => d?.allowed)).toBe(true);
      // The first sized by the pace, the second by what the 49 others waiting for it need.
      expect(calls.mock.calls.length).toBe(2);
      // Leased tokens are dropped a second after they were taken: the next request asks Redis.
      now += 1_001;
      await node.consume(id, 600_000);
      expect(calls.mock.calls.length).toBe(3);
    } finally {
      calls.mockRestore();
    }
  });

  it('counts a key limited to less than one request per lease period in Redis, request by request', async () => {
    const id = fresh();
    const node = new RedisRateLimiter({
      redis: env.redis,
      keys: keys(),
      logger: silentLogger(),
      now: () => now,
    });
    const calls = vi.spyOn(redis, 'tributaryRateLimit');
    try {
      for (let i = 0; i < 5; i++) {
        expect(await node.consume(id, 500)).toMatchObject({ allowed: true, remaining: 499 - i });
      }
      expect(calls.mock.calls.length).toBe(5);
    } finally {
      calls.mockRestore();
    }
  });
});
