import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import type { AppEnv } from '../../src/http/env.ts';
import { ApiError, errorResponse } from '../../src/http/errors.ts';
import { KeyResolver } from '../../src/http/key-resolver.ts';
import { authenticate, requireScope } from '../../src/http/middleware/auth.ts';
import { type RateLimitDecision, type RateLimiter, rateLimit } from '../../src/http/middleware/rate-limit.ts';
import { type ApiKeyInfo, hashKey } from '../../src/store/api-keys.repo.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';

const keyInfo = (id: string, rateLimitPerMinute: number | null): ApiKeyInfo => ({
  id,
  name: id,
  services: [],
  scopes: ['read'],
  rateLimitPerMinute,
  keyPrefix: 'trb_xxxx',
  createdAt: '',
  revokedAt: null,
  expiresAt: null,
});

const KEYS: Record<string, ApiKeyInfo> = {
  [hashKey('limited')]: keyInfo('limited', 2),
  [hashKey('own-limit-none')]: keyInfo('none', null),
};

/** A bucket of `limit` requests that never refills; records what it was asked. */
class FakeLimiter implements RateLimiter {
  calls: { keyId: string; perMinute: number }[] = [];
  used = new Map<string, number>();
  down = false;
  async consume(keyId: string, perMinute: number): Promise<RateLimitDecision | undefined> {
    this.calls.push({ keyId, perMinute });
    if (this.down) return undefined;
    const used = (this.used.get(keyId) ?? 0) + 1;
    this.used.set(keyId, used);
    const allowed = used <= perMinute;
    return {
      allowed,
      limit: perMinute,
      remaining: Math.max(0, perMinute - used),
      resetS: 60,
      retryAfterS: 7,
    };
  }
}

function appWith(limiter: FakeLimiter, defaultPerMinute?: number) {
  const keys = new KeyResolver({
    findByHash: async (h) => KEYS[h],
    adminApiKey: undefined,
    logger: silentLogger(),
  });
  const app = new Hono<AppEnv>();
  app.use('/v1/*', authenticate(keys), rateLimit({ limiter, defaultPerMinute }));
  app.get('/v1/things', requireScope(keys, 'read'), (c) => c.json({ ok: true }));
  app.get('/v1/admin/things', requireScope(keys, 'admin'), (c) => c.json({ ok: true }));
  app.get('/v1/broken', requireScope(keys, 'read'), () => {
    throw new ApiError('teapot', 418, 'no');
  });
  app.onError((err, c) => errorResponse(c, err as ApiError));
  const get = (path: string, key?: string) => app.request(path, { headers: key ? { 'x-api-key': key } : {} });
  return { get };
}

describe('rate limit middleware', () => {
  it('counts every authenticated request once and refuses over the limit with headers', async () => {
    const limiter = new FakeLimiter();
    const { get } = appWith(limiter);
    const first = await get('/v1/things', 'limited');
    expect(first.status).toBe(200);
    expect(first.headers.get('RateLimit-Limit')).toBe('2');
    expect(first.headers.get('RateLimit-Remaining')).toBe('1');
    expect(first.headers.get('RateLimit-Reset')).toBe('60');
    // A 403 is an authenticated request too: counted, and it carries the headers.
    const forbidden = await get('/v1/admin/things', 'limited');
    expect(forbidden.status).toBe(403);
    expect(forbidden.headers.get('RateLimit-Remaining')).toBe('0');
    const refused = await get('/v1/things', 'limited');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('Retry-After')).toBe('7');
    expect(refused.headers.get('RateLimit-Limit')).toBe('2');
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('rate_limited');
    expect(limiter.calls).toEqual([
      { keyId: 'limited', perMinute: 2 },
      { keyId: 'limited', perMinute: 2 },
      { keyId: 'limited', perMinute: 2 },
    ]);
  });

  it('puts the headers on error responses of the route too', async () => {
    const { get } = appWith(new FakeLimiter());
    const res = await get('/v1/broken', 'limited');
    expect(res.status).toBe(418);
    expect(res.headers.get('RateLimit-Limit')).toBe('2');
  });

  it('leaves keys without a limit alone (no limiter call, no headers) unless there is a default', async () => {
    const limiter = new FakeLimiter();
    const res = await appWith(limiter).get('/v1/things', 'own-limit-none');
    expect(res.status).toBe(200);
    expect(res.headers.get('RateLimit-Limit')).toBeNull();
    expect(limiter.calls).toEqual([]);

    const withDefault = new FakeLimiter();
    const limited = await appWith(withDefault, 50).get('/v1/things', 'own-limit-none');
    expect(limited.headers.get('RateLimit-Limit')).toBe('50');
    expect(withDefault.calls).toEqual([{ keyId: 'none', perMinute: 50 }]);
  });

  it('does not count requests without a valid key', async () => {
    const limiter = new FakeLimiter();
    const { get } = appWith(limiter);
    expect((await get('/v1/things')).status).toBe(401);
    expect((await get('/v1/things', 'wrong')).status).toBe(401);
    expect(limiter.calls).toEqual([]);
  });

  it('fails open when the limiter cannot answer', async () => {
    const limiter = new FakeLimiter();
    limiter.down = true;
    const { get } = appWith(limiter);
    for (let i = 0; i < 5; i++) {
      const res = await get('/v1/things', 'limited');
      expect(res.status).toBe(200);
      expect(res.headers.get('RateLimit-Limit')).toBeNull();
    }
  });
});
