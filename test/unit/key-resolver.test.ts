import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { KeyInvalidations, KeyResolver } from '../../src/http/key-resolver.ts';
import type { ApiKeyInfo } from '../../src/store/api-keys.repo.ts';
import { hashKey } from '../../src/store/api-keys.repo.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';

const info: ApiKeyInfo = {
  id: 'k1',
  name: 'n',
  scopes: ['ingest'],
  rateLimitPerMinute: null,
  keyPrefix: 'trb_abcd',
  createdAt: '',
  revokedAt: null,
  expiresAt: null,
};

describe('KeyResolver', () => {
  it('grants every scope to the bootstrap key and nothing to a near miss', async () => {
    const r = new KeyResolver({
      findByHash: async () => undefined,
      adminApiKey: 'admin-key-0123456789',
      logger: silentLogger(),
    });
    expect((await r.resolve('admin-key-0123456789'))?.scopes).toEqual(['ingest', 'read', 'dsar', 'admin']);
    expect(await r.resolve('admin-key-012345678')).toBeNull();
  });

  it('caches lookups for the TTL, then asks again (revocation takes effect)', async () => {
    let now = 0;
    let calls = 0;
    let active = true;
    const r = new KeyResolver({
      findByHash: async (h) => {
        calls++;
        return active && h === hashKey('good') ? info : undefined;
      },
      adminApiKey: undefined,
      logger: silentLogger(),
      ttlMs: 1000,
      now: () => now,
    });
    expect((await r.resolve('good'))?.keyId).toBe('k1');
    await r.resolve('good');
    expect(calls).toBe(1);
    active = false;
    now = 1001;
    expect(await r.resolve('good')).toBeNull();
    expect(calls).toBe(2);
  });

  it('keeps serving a known key while the database is down, but not an unknown one', async () => {
    let now = 0;
    let down = false;
    const r = new KeyResolver({
      findByHash: async () => {
        if (down) throw new Error('ECONNREFUSED');
        return info;
      },
      adminApiKey: undefined,
      logger: silentLogger(),
      ttlMs: 1000,
      now: () => now,
    });
    await r.resolve('good');
    down = true;
    now = 5000;
    expect((await r.resolve('good'))?.keyId).toBe('k1');
    await expect(r.resolve('never-seen')).rejects.toThrow('ECONNREFUSED');
  });

  it('stops a rotated key at its expiry even while its answer is cached', async () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const r = new KeyResolver({
      findByHash: async () => ({ ...info, expiresAt: new Date(now + 500).toISOString() }),
      adminApiKey: undefined,
      logger: silentLogger(),
      ttlMs: 5000,
      now: () => now,
    });
    expect((await r.resolve('good'))?.keyId).toBe('k1');
    now += 499;
    expect((await r.resolve('good'))?.keyId).toBe('k1');
    now += 1;
    expect(await r.resolve('good')).toBeNull();
  });

  it('forgets a changed key in every resolver sharing the channel, and only that key', async () => {
    // A fake Redis pub/sub: what one connection publishes, every subscriber receives.
    const bus = new EventEmitter();
    const fakeRedis = () => {
      const conn = Object.assign(new EventEmitter(), {
        status: 'ready',
        subscribe: async (channel: string) => {
          bus.on(channel, (m: string) => conn.emit('message', channel, m));
        },
        publish: async (channel: string, m: string) => {
          bus.emit(channel, m);
          return 1;
        },
      });
      return conn as unknown as Redis;
    };
    const lookups: string[] = [];
    const other = { ...info, id: 'k2' };
    const node = () =>
      new KeyResolver({
        findByHash: async (h) => {
          lookups.push(h);
          return h === hashKey('good') ? info : other;
        },
        adminApiKey: undefined,
        logger: silentLogger(),
        ttlMs: 60_000,
        invalidations: new KeyInvalidations({
          redis: fakeRedis(),
          subscriber: fakeRedis(),
          channel: 'p:api-keys:invalidate',
          logger: silentLogger(),
        }),
      });
    const [a, b] = [node(), node()];
    for (const r of [a, b]) {
      await r.resolve('good');
      await r.resolve('other');
    }
    expect(lookups).toHaveLength(4);
    await a.keyChanged('k1');
    await new Promise((resolve) => setImmediate(resolve));
    for (const r of [a, b]) {
      await r.resolve('good');
      await r.resolve('other');
    }
    // Each node asked again for k1 only; k2 stayed cached.
    expect(lookups.filter((h) => h === hashKey('good'))).toHaveLength(4);
    expect(lookups.filter((h) => h === hashKey('other'))).toHaveLength(2);
  });

  it('does not cache a lookup that raced a revocation', async () => {
    let calls = 0;
    let release: () => void = () => {};
    const r = new KeyResolver({
      findByHash: async () => {
        calls++;
        if (calls === 1) await new Promise<void>((resolve) => (release = resolve));
        return calls === 1 ? info : undefined;
      },
      adminApiKey: undefined,
      logger: silentLogger(),
    });
    const first = r.resolve('good');
    await r.keyChanged('k1');
    release();
    expect((await first)?.keyId).toBe('k1');
    expect(await r.resolve('good')).toBeNull();
    expect(calls).toBe(2);
  });
});
