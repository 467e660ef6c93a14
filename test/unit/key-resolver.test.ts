import { describe, expect, it } from 'vitest';
import { KeyResolver } from '../../src/http/key-resolver.ts';
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
});
