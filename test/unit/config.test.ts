import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, maxRetentionDays } from '../../src/config.ts';

describe('loadConfig', () => {
  it('applies defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      PORT: 8080,
      REDIS_URL: 'redis://127.0.0.1:6379',
      REDIS_PREFIX: 'tributary',
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/tributary',
      STREAM_PARTITIONS: 8,
      DEDUPE_WINDOW_S: 86_400,
      MAX_BODY_BYTES: 1_048_576,
      BATCH_SIZE: 1000,
      MAX_DELIVERIES: 5,
      RETENTION_DAYS: 30,
      RETENTION_BY_SERVICE: {},
    });
    expect(c.ADMIN_API_KEY).toBeUndefined();
  });

  it('parses values and treats empty strings as unset', () => {
    const c = loadConfig({ PORT: '9000', RETENTION_BY_SERVICE: 'audit=365, metrics=90', ADMIN_API_KEY: '' });
    expect(c.PORT).toBe(9000);
    expect(c.RETENTION_BY_SERVICE).toEqual({ audit: 365, metrics: 90 });
    expect(maxRetentionDays(c)).toBe(365);
    expect(c.ADMIN_API_KEY).toBeUndefined();
  });

  it('CORS_ORIGINS: unset is none; exact origins or *; a path or a bare host is refused', () => {
    expect(loadConfig({}).CORS_ORIGINS).toEqual([]);
    expect(loadConfig({ CORS_ORIGINS: 'https://shop.example, http://localhost:3000' }).CORS_ORIGINS).toEqual([
      'https://shop.example',
      'http://localhost:3000',
    ]);
    expect(loadConfig({ CORS_ORIGINS: '*' }).CORS_ORIGINS).toEqual(['*']);
    for (const bad of ['https://shop.example/', 'shop.example', 'ftp://x.example'])
      expect(() => loadConfig({ CORS_ORIGINS: bad }), bad).toThrow(/CORS_ORIGINS/);
  });

  it('names every bad variable', () => {
    expect(() => loadConfig({ PORT: 'x', REDIS_URL: 'http://nope', ADMIN_API_KEY: 'short' })).toThrow(
      ConfigError,
    );
    try {
      loadConfig({
        PORT: 'x',
        REDIS_URL: 'http://nope',
        ADMIN_API_KEY: 'short',
        RETENTION_BY_SERVICE: 'a=0',
      });
    } catch (err) {
      const msg = (err as Error).message;
      for (const name of ['PORT', 'REDIS_URL', 'ADMIN_API_KEY', 'RETENTION_BY_SERVICE'])
        expect(msg).toContain(name);
    }
  });

  it('defaults the spill threshold to a tenth of the buffer and refuses one at or above it', () => {
    expect(loadConfig({ BUFFER_MAX_EVENTS: '50' }).CHECKPOINT_SPILL_THRESHOLD).toBe(5);
    expect(loadConfig({}).CHECKPOINT_SPILL_THRESHOLD).toBe(100_000);
    expect(() => loadConfig({ BUFFER_MAX_EVENTS: '100', CHECKPOINT_SPILL_THRESHOLD: '100' })).toThrow(
      /CHECKPOINT_SPILL_THRESHOLD/,
    );
    expect(() =>
      loadConfig({ BREAKER_HALF_OPEN_AFTER_MS: '5000', BREAKER_MAX_HALF_OPEN_AFTER_MS: '1000' }),
    ).toThrow(/BREAKER_MAX_HALF_OPEN_AFTER_MS/);
  });
});
