import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { AuthThrottle } from '../../src/http/auth-throttle.ts';
import { ApiError } from '../../src/http/errors.ts';
import { KeyInvalidations, KeyResolver } from '../../src/http/key-resolver.ts';
import type { ApiKeyInfo } from '../../src/store/api-keys.repo.ts';
import { generateKey, hashKey, isStoredKeyShape } from '../../src/store/api-keys.repo.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';

const info: ApiKeyInfo = {
  id: 'k1',
  name: 'n',
  scopes: ['ingest'],
  services: [],
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

/** Invalidation channels of several resolvers on one fake pub/sub bus. */
function sharedChannel(): () => KeyInvalidations {
  const bus = new EventEmitter();
  const conn = () =>
    Object.assign(new EventEmitter(), {
      status: 'ready',
      subscribe: async function (this: EventEmitter, channel: string) {
        bus.on(channel, (m: string) => this.emit('message', channel, m));
      },
      publish: async (channel: string, m: string) => {
        bus.emit(channel, m);
        return 1;
      },
    }) as unknown as Redis;
  return () =>
    new KeyInvalidations({ redis: conn(), subscriber: conn(), channel: 'p:inv', logger: silentLogger() });
}

/** A key store behind a counting lookup that answers on the next tick (so lookups can overlap). */
function countingStore() {
  const stored = new Map<string, ApiKeyInfo>();
  const lookups: string[] = [];
  const findByHash = async (hash: string) => {
    lookups.push(hash);
    // Read when asked, answered a tick later: the answer may be out of date when it arrives.
    const found = stored.get(hash);
    await new Promise((resolve) => setImmediate(resolve));
    return found;
  };
  return { stored, lookups, findByHash };
}

describe('KeyResolver: keys that cannot be ours', () => {
  it('refuses a key of the wrong shape with no lookup; the bootstrap key may have any shape', async () => {
    const store = countingStore();
    const r = new KeyResolver({
      findByHash: store.findByHash,
      storedKeyShape: isStoredKeyShape,
      adminApiKey: 'any-shape-admin-key',
      logger: silentLogger(),
    });
    const good = generateKey();
    store.stored.set(hashKey(good), info);
    const malformed = [
      '',
      'x',
      'trb_short',
      `trb_${'a'.repeat(33)}`,
      `TRB_${'a'.repeat(32)}`,
      `trb_${'a'.repeat(31)}!`,
    ];
    for (let round = 0; round < 3; round++) {
      for (const key of malformed) expect(await r.resolve(key)).toBeNull();
    }
    expect(store.lookups).toEqual([]);
    expect((await r.resolve('any-shape-admin-key'))?.keyId).toBe('admin-bootstrap');
    expect((await r.resolve(good))?.keyId).toBe('k1');
    expect(store.lookups).toEqual([hashKey(good)]);
  });

  it('a flood of unknown well-formed keys costs one lookup per key per TTL, concurrent ones included', async () => {
    let now = 0;
    const store = countingStore();
    const r = new KeyResolver({
      findByHash: store.findByHash,
      storedKeyShape: isStoredKeyShape,
      adminApiKey: undefined,
      logger: silentLogger(),
      negativeTtlMs: 30_000,
      now: () => now,
    });
    const flood = Array.from({ length: 200 }, () => generateKey());
    // Each key five times, all at once, then five times more one after the other.
    const answers = await Promise.all(flood.flatMap((k) => Array.from({ length: 5 }, () => r.resolve(k))));
    expect(answers.every((a) => a === null)).toBe(true);
    for (let i = 0; i < 5; i++) for (const k of flood) await r.resolve(k);
    expect(store.lookups).toHaveLength(200);
    expect(new Set(store.lookups).size).toBe(200);
    now = 29_999;
    for (const k of flood) await r.resolve(k);
    expect(store.lookups).toHaveLength(200);
    now = 30_000;
    for (const k of flood) await r.resolve(k);
    expect(store.lookups).toHaveLength(400);
  });

  it('unknown keys are remembered apart, in bounded memory: a flood never pushes a valid key out', async () => {
    const store = countingStore();
    const r = new KeyResolver({
      findByHash: store.findByHash,
      storedKeyShape: isStoredKeyShape,
      adminApiKey: undefined,
      logger: silentLogger(),
      ttlMs: 60_000,
      maxEntries: 10,
      maxNegativeEntries: 50,
    });
    const good = generateKey();
    store.stored.set(hashKey(good), info);
    await r.resolve(good);
    const flood = Array.from({ length: 100 }, () => generateKey());
    for (const k of flood) await r.resolve(k);
    expect((await r.resolve(good))?.keyId).toBe('k1');
    expect(store.lookups.filter((h) => h === hashKey(good))).toHaveLength(1);
    // Only the newest 50 unknown keys are remembered: the first ones are asked about again.
    store.lookups.length = 0;
    for (const k of flood.toReversed()) await r.resolve(k);
    expect(store.lookups).toHaveLength(50);
  });

  it('a key created right after being presented unknown works at once, in every process', async () => {
    const store = countingStore();
    const channel = sharedChannel();
    const node = () =>
      new KeyResolver({
        findByHash: store.findByHash,
        storedKeyShape: isStoredKeyShape,
        adminApiKey: undefined,
        logger: silentLogger(),
        negativeTtlMs: 3_600_000,
        invalidations: channel(),
      });
    const [a, b] = [node(), node()];
    const key = generateKey();
    expect(await a.resolve(key)).toBeNull();
    expect(await b.resolve(key)).toBeNull();
    store.stored.set(hashKey(key), { ...info, id: 'k-new' });
    await a.keyChanged('k-new');
    expect((await a.resolve(key))?.keyId).toBe('k-new');
    expect((await b.resolve(key))?.keyId).toBe('k-new');
  });

  it('an unknown answer that raced a creation is not remembered', async () => {
    const store = countingStore();
    const r = new KeyResolver({
      findByHash: store.findByHash,
      storedKeyShape: isStoredKeyShape,
      adminApiKey: undefined,
      logger: silentLogger(),
    });
    const key = generateKey();
    const first = r.resolve(key);
    store.stored.set(hashKey(key), info);
    await r.keyChanged('k1');
    expect(await first).toBeNull();
    expect((await r.resolve(key))?.keyId).toBe('k1');
  });
});

/** A throttle that allows `allowance` failures per address, then refuses; records what it was told. */
class FakeThrottle implements AuthThrottle {
  readonly failures: string[] = [];
  readonly allowance: number;
  constructor(allowance: number) {
    this.allowance = allowance;
  }
  refusedFor(address: string): number | undefined {
    return this.failures.filter((a) => a === address).length >= this.allowance ? 42 : undefined;
  }
  async failed(address: string): Promise<number | undefined> {
    this.failures.push(address);
    return this.failures.filter((a) => a === address).length > this.allowance ? 42 : undefined;
  }
}

describe('KeyResolver: failed authentications throttled by address', () => {
  const throttled = async (p: Promise<unknown>) => {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ code: 'auth_throttled', status: 429, retryAfter: 42 });
  };

  it('counts every kind of failure; once over, refuses any key with no lookup, except keys accepted here recently', async () => {
    const store = countingStore();
    const throttle = new FakeThrottle(3);
    const r = new KeyResolver({
      findByHash: store.findByHash,
      storedKeyShape: isStoredKeyShape,
      adminApiKey: 'bootstrap-admin-key',
      logger: silentLogger(),
      throttle,
    });
    const known = generateKey();
    const fresh = generateKey();
    store.stored.set(hashKey(known), info);
    store.stored.set(hashKey(fresh), { ...info, id: 'k2' });
    expect((await r.resolve(known, '192.0.2.1'))?.keyId).toBe('k1');
    const unknown = generateKey();
    // Malformed, unknown (looked up), unknown again (remembered): three failures.
    expect(await r.resolve('nope', '192.0.2.1')).toBeNull();
    expect(await r.resolve(unknown, '192.0.2.1')).toBeNull();
    expect(await r.resolve(unknown, '192.0.2.1')).toBeNull();
    expect(throttle.failures).toEqual(['192.0.2.1', '192.0.2.1', '192.0.2.1']);
    const lookups = store.lookups.length;
    await throttled(r.resolve(generateKey(), '192.0.2.1'));
    await throttled(r.resolve(fresh, '192.0.2.1'));
    await throttled(r.resolve('bootstrap-admin-key', '192.0.2.1'));
    expect(store.lookups).toHaveLength(lookups);
    // A key this process accepted recently still works from that address.
    expect((await r.resolve(known, '192.0.2.1'))?.keyId).toBe('k1');
    // Other addresses, and calls with no address, are not affected.
    expect((await r.resolve(fresh, '192.0.2.2'))?.keyId).toBe('k2');
    expect(await r.resolve(generateKey(), '192.0.2.2')).toBeNull();
    expect((await r.resolve('bootstrap-admin-key'))?.keyId).toBe('admin-bootstrap');
  });

  it('the failure over the allowance is itself a 429', async () => {
    const throttle: AuthThrottle = { refusedFor: () => undefined, failed: async () => 42 };
    const r = new KeyResolver({
      findByHash: async () => undefined,
      adminApiKey: undefined,
      logger: silentLogger(),
      throttle,
    });
    await throttled(r.resolve(generateKey(), '192.0.2.1'));
    expect(await r.resolve(generateKey())).toBeNull();
  });
});
