import { describe, expect, it } from 'vitest';
import { KeyLoad, keyIdOf } from '../../src/buffer/key-load.ts';
import type { RedisLike } from '../../src/buffer/redis-client.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { parseEvent } from '../../src/events/event.schema.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';

/** The two hash commands KeyLoad uses, in memory. */
function fakeRedis(): RedisLike & { hash: Map<string, number> } {
  const hash = new Map<string, number>();
  return {
    hash,
    hincrby: async (_key: string, field: string, n: number) => {
      hash.set(field, (hash.get(field) ?? 0) + n);
      return hash.get(field);
    },
    hgetall: async () => Object.fromEntries([...hash].map(([k, v]) => [k, String(v)])),
    del: async () => {
      hash.clear();
      return 1;
    },
  } as unknown as RedisLike & { hash: Map<string, number> };
}

describe('KeyLoad', () => {
  const load = (redis: RedisLike) =>
    new KeyLoad({ redis, keys: { keyLoad: 't:keyload' }, logger: silentLogger(), maxPerKey: 100 });

  it('holds a key back over its share, and only that key', async () => {
    const redis = fakeRedis();
    const l = load(redis);
    l.added('a', 150);
    l.added('b', 10);
    await l.refresh(160);
    expect(l.isOver('a')).toBe(true);
    expect(l.isOver('b')).toBe(false);
  });

  it('holds a key back as soon as this process has taken its share, before the next poll', async () => {
    const l = load(fakeRedis());
    await l.refresh(5);
    l.added('a', 90);
    expect(l.isOver('a')).toBe(false);
    l.added('a', 20);
    expect(l.isOver('a')).toBe(true);
  });

  it('heals: a count is never read above the buffer’s length nor below 0, and is reset when the buffer is empty', async () => {
    const redis = fakeRedis();
    const l = load(redis);
    // A worker died between its ack and its HINCRBY: the count stays at 500 while the
    // buffer holds 50 events.
    redis.hash.set('a', 500);
    redis.hash.set('b', -30); // acknowledged twice after a reclaim
    await l.refresh(50);
    expect(l.isOver('a')).toBe(false);
    expect(l.snapshot()).toEqual(
      new Map([
        ['a', 50],
        ['b', 0],
      ]),
    );
    await l.refresh(0);
    expect(redis.hash.size).toBe(0);
    expect(l.snapshot()).toEqual(new Map());
  });

  it('finds the key id parseEvent wrote, and none in an event without one', () => {
    const result = parseEvent(
      { service: 's', type: 't', metadata: { keyId: 'forged' } },
      { now: Date.now(), maxAgeMs: 86_400_000, keyId: 'k-1' },
    );
    expect(result.ok && keyIdOf(result.json)).toBe('k-1');
    expect(keyIdOf(JSON.stringify({ id: 'x', service: 's', type: 'a "keyId":"no"' }))).toBeUndefined();
  });
});

describe('DEFAULT_KEY_RATE_LIMIT', () => {
  it('is read under its former name too, and both names with different values are refused', () => {
    expect(loadConfig({ DEFAULT_KEY_RATE_LIMIT: '60' }).DEFAULT_KEY_RATE_LIMIT).toBe(60);
    expect(loadConfig({ DEFAULT_RATE_LIMIT_PER_MINUTE: '60' }).DEFAULT_RATE_LIMIT_PER_MINUTE).toBe(60);
    expect(() => loadConfig({ DEFAULT_KEY_RATE_LIMIT: '60', DEFAULT_RATE_LIMIT_PER_MINUTE: '30' })).toThrow(
      ConfigError,
    );
    expect(() => loadConfig({ BUFFER_MAX_SHARE_PER_KEY: '0' })).toThrow(/BUFFER_MAX_SHARE_PER_KEY/);
  });
});
