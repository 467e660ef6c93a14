import { randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import type { BufferedEvent, EventProducer } from '../../src/buffer/producer.ts';
import {
  MetadataCipher,
  parseMetadataEncryption,
  parseMetadataKeys,
} from '../../src/compliance/metadata-cipher.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { type NormalisedEvent, parseEvent } from '../../src/events/event.schema.ts';
import { KeyResolver } from '../../src/http/key-resolver.ts';
import { eventRoutes } from '../../src/http/routes/events.ts';
import type { Db } from '../../src/store/db.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';

const keyText = () => randomBytes(32).toString('base64');
const A = `a:${keyText()}`;
const B = `b-2:${keyText()}`;

const cipherOf = (keys: string, fields: string[] = ['email', 'phone'], metrics?: Metrics) =>
  new MetadataCipher({ keys: parseMetadataKeys(keys), fields, metrics });

const eventWith = (metadata?: Record<string, unknown>) => {
  const result = parseEvent(
    { service: 'checkout', type: 'order.placed', ...(metadata ? { metadata } : {}) },
    { now: Date.now(), maxAgeMs: 86_400_000 },
  );
  if (!result.ok) throw new Error(JSON.stringify(result.issues));
  return { event: result.event, json: result.json };
};

const failures = async (metrics: Metrics) =>
  Object.fromEntries(
    (await metrics.metadataDecryptFailures.get()).values.map((v) => [v.labels.reason, v.value]),
  );

describe('METADATA_ENCRYPTION_KEYS parsing', () => {
  it('accepts standard and URL-safe base64 of 32 bytes, first key first', () => {
    const urlSafe = randomBytes(32).toString('base64url');
    const keys = parseMetadataKeys(` ${A} , k_3:${urlSafe}`);
    expect(keys.map((k) => k.id)).toEqual(['a', 'k_3']);
    expect(keys[0]?.key.symmetricKeySize).toBe(32);
  });

  it.each([
    ['', 'no key given'],
    ['nocolon', 'entry 1 is not id:base64'],
    [`bad id:${keyText()}`, 'entry 1: the id must be'],
    [`${'x'.repeat(33)}:${keyText()}`, 'entry 1: the id must be'],
    [`${A},a:${keyText()}`, 'entry 2 ("a"): the id is used twice'],
    [
      `short:${randomBytes(31).toString('base64')}`,
      'entry 1 ("short"): the key must be base64 of exactly 32',
    ],
    [`long:${randomBytes(33).toString('base64')}`, 'exactly 32 bytes'],
    ['junk:!!!!not-base64!!!!', 'exactly 32 bytes'],
  ])('refuses %j with a ConfigError naming the variable', (raw, message) => {
    let error: unknown;
    try {
      parseMetadataKeys(raw);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain('METADATA_ENCRYPTION_KEYS');
    expect((error as Error).message).toContain(message);
  });

  it('never repeats key material in its messages', () => {
    const material = randomBytes(31).toString('base64');
    expect(() => parseMetadataKeys(`k:${material}`)).toThrow(ConfigError);
    try {
      parseMetadataKeys(`k:${material}`);
    } catch (err) {
      expect((err as Error).message).not.toContain(material);
    }
  });

  it('is off without keys, and parsed from the configuration otherwise', () => {
    expect(parseMetadataEncryption(loadConfig({}))).toBeUndefined();
    const parsed = parseMetadataEncryption(
      loadConfig({ ENCRYPT_METADATA_KEYS: 'email, phone,email', METADATA_ENCRYPTION_KEYS: A }),
    );
    expect(parsed?.fields).toEqual(['email', 'phone']);
    expect(parsed?.keys.map((k) => k.id)).toEqual(['a']);
    expect(() => loadConfig({ ENCRYPT_METADATA_KEYS: 'email' })).toThrow(/METADATA_ENCRYPTION_KEYS/);
  });
});

describe('MetadataCipher', () => {
  it('encrypts only the configured top-level keys and round-trips any JSON value', () => {
    const cipher = cipherOf(A, ['email', 'phone', 'profile', 'n', 'nothing', 'list', 'flag']);
    const metadata = {
      email: 'ada@example.com',
      phone: '+44 20 7946 0000 é 😀',
      profile: { name: 'Ada', tags: ['x', { deep: [1, 2.5, null] }] },
      n: 42,
      nothing: null,
      list: [1, 'two'],
      flag: false,
      plan: 'pro',
      nested: { email: 'not top-level' },
    };
    const item = eventWith(metadata);
    const sealed = cipher.sealEvent(item);
    const stored = sealed.event.metadata as Record<string, unknown>;
    for (const field of ['email', 'phone', 'profile', 'n', 'nothing', 'list', 'flag']) {
      expect(stored[field]).toMatch(/^enc:v1:a:[A-Za-z0-9_-]+$/);
    }
    expect(stored.plan).toBe('pro');
    expect(stored.nested).toEqual({ email: 'not top-level' });
    expect(Object.keys(stored)).toEqual(Object.keys(metadata));
    expect(sealed.json).toBe(JSON.stringify(sealed.event));
    expect(JSON.stringify(sealed.event)).not.toContain('ada@example.com');
    // The event as validated is left as it was.
    expect(item.event.metadata).toEqual(metadata);
    expect(cipher.open(JSON.parse(sealed.json).metadata)).toEqual(metadata);
  });

  it('uses a fresh IV for every value, across refills of its IV pool', () => {
    const cipher = cipherOf(A);
    const ivs = Array.from({ length: 1_000 }, () =>
      Buffer.from(cipher.seal('email', 'same').slice('enc:v1:a:'.length), 'base64url')
        .subarray(0, 12)
        .toString('hex'),
    );
    expect(new Set(ivs).size).toBe(ivs.length);
  });

  it('rotation: values sealed with A open after B comes first; new values use B', () => {
    const old = cipherOf(A).seal('email', 'old@example.com');
    const rotated = cipherOf(`${B},${A}`);
    expect(rotated.open({ email: old })).toEqual({ email: 'old@example.com' });
    const fresh = rotated.seal('email', 'new@example.com');
    expect(fresh.startsWith('enc:v1:b-2:')).toBe(true);
    expect(cipherOf(`${B},${A}`).open({ email: fresh })).toEqual({ email: 'new@example.com' });
  });

  it('reads an unknown key id, an altered or moved value as a marker and counts it; never throws', async () => {
    const metrics = new Metrics(new Registry());
    const sealed = cipherOf(A).seal('email', 'ada@example.com');
    const body = sealed.slice('enc:v1:a:'.length);
    const flipped = `enc:v1:a:${body.slice(0, 20)}${body[20] === 'A' ? 'B' : 'A'}${body.slice(21)}`;
    const withoutA = cipherOf(B, ['email'], metrics);
    expect(withoutA.open({ email: sealed, plan: 'pro' })).toEqual({
      email: { encrypted: true, keyId: 'a', reason: 'unknown_key' },
      plan: 'pro',
    });
    const withA = cipherOf(A, ['email'], metrics);
    expect(withA.open({ email: flipped })).toEqual({
      email: { encrypted: true, keyId: 'a', reason: 'bad_tag' },
    });
    expect(withA.open({ phone: sealed })).toEqual({
      phone: { encrypted: true, keyId: 'a', reason: 'bad_tag' },
    });
    expect(withA.open({ a: 'enc:v1:a:AAAA', b: 'enc:v1:nokeyid', c: 'enc:v1:bad id:AAAA' })).toEqual({
      a: { encrypted: true, keyId: 'a', reason: 'malformed' },
      b: { encrypted: true, keyId: null, reason: 'malformed' },
      c: { encrypted: true, keyId: null, reason: 'malformed' },
    });
    expect(await failures(metrics)).toEqual({ unknown_key: 1, bad_tag: 2, malformed: 3 });
  });

  it('opens values under keys no longer configured, and leaves everything else alone', () => {
    const sealed = cipherOf(A, ['phone']).seal('phone', '+1 555');
    const now = cipherOf(A, ['email']);
    expect(now.open({ phone: sealed })).toEqual({ phone: '+1 555' });
    const plain = { email: 'x', enc: 'enc:v2:whatever', n: 1 };
    expect(now.open(plain)).toBe(plain);
    expect(now.open(null)).toBeNull();
    expect(now.open([sealed])).toEqual([sealed]);
  });

  it('with no key configured, or none present, sealEvent is the identity', () => {
    const off = cipherOf(A, []);
    expect(off.encrypting).toBe(false);
    const item = eventWith({ email: 'ada@example.com' });
    expect(off.sealEvent(item)).toBe(item);
    const on = cipherOf(A);
    const bare = eventWith();
    expect(on.sealEvent(bare)).toBe(bare);
    const other = eventWith({ plan: 'pro' });
    expect(on.sealEvent(other)).toBe(other);
  });
});

describe('ingest and read through the routes', () => {
  const ADMIN = 'unit-admin-key-0123456789';

  const routes = (cipher: MetadataCipher | undefined, rows: unknown[] = []) => {
    const buffered: BufferedEvent[] = [];
    const producer = {
      enqueue: async (items: readonly BufferedEvent[]) => {
        buffered.push(...items);
        return items.map(() => 'accepted' as const);
      },
    } as unknown as EventProducer;
    const db = {
      select: () => ({ from: () => ({ where: () => ({ orderBy: () => ({ limit: async () => rows }) }) }) }),
    } as unknown as Db;
    const app = eventRoutes({
      config: { MAX_BODY_BYTES: 1_048_576, RETENTION_DAYS: 30, RETENTION_BY_SERVICE: {} },
      producer,
      monitor: { overloaded: false } as never,
      reads: { read: (fn) => fn({ db, pool: undefined as never }) },
      keys: new KeyResolver({
        findByHash: async () => undefined,
        adminApiKey: ADMIN,
        logger: silentLogger(),
      }),
      metrics: new Metrics(new Registry()),
      cipher,
    });
    const post = (path: string, body: unknown) =>
      app.request(path, {
        method: 'POST',
        headers: { 'x-api-key': ADMIN, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    return { app, buffered, post };
  };

  it('buffers ciphertext for the configured keys, single and batch', async () => {
    const { buffered, post } = routes(cipherOf(A, ['email']));
    const metadata = { email: 'ada@example.com', plan: 'pro' };
    expect((await post('/v1/events', { service: 's', type: 't', metadata })).status).toBe(202);
    const batch = await post('/v1/events/batch', {
      events: [{ service: 's', type: 't', metadata }, { service: 's', type: 't' }, { service: '' }],
    });
    expect(batch.status).toBe(202);
    expect(await batch.json()).toMatchObject({ accepted: 2, rejected: [{ index: 2 }] });
    expect(buffered).toHaveLength(3);
    for (const item of buffered.slice(0, 2)) {
      const entry = JSON.parse(item.json) as NormalisedEvent;
      expect(entry).toEqual(item.event);
      expect(entry.metadata?.email).toMatch(/^enc:v1:a:/);
      expect(entry.metadata?.plan).toBe('pro');
    }
    expect(buffered[2]?.event.metadata).toBeUndefined();
  });

  it('with nothing to encrypt, buffers the validated JSON text without calling the cipher', async () => {
    const cipher = cipherOf(A, []);
    const seal = vi.spyOn(cipher, 'sealEvent');
    const { buffered, post } = routes(cipher);
    const body = { id: crypto.randomUUID(), service: 's', type: 't', metadata: { email: 'ada@example.com' } };
    await post('/v1/events', body);
    await post('/v1/events/batch', { events: [body] });
    expect(seal).not.toHaveBeenCalled();
    for (const item of buffered) expect(item.json).toBe(JSON.stringify(item.event));
    expect(buffered[0]?.event.metadata).toEqual(body.metadata);
  });

  it('GET /v1/events returns the values decrypted', async () => {
    const cipher = cipherOf(A, ['email']);
    const row = {
      id: crypto.randomUUID(),
      service: 's',
      type: 't',
      occurredAt: '2026-01-01T00:00:00.000000Z',
      receivedAt: new Date('2026-01-01T00:00:00Z'),
      userId: null,
      message: null,
      metadata: { email: cipher.seal('email', 'ada@example.com'), plan: 'pro' },
    };
    const { app } = routes(cipher, [row]);
    const res = await app.request('/v1/events', { headers: { 'x-api-key': ADMIN } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { events: { metadata: unknown }[] };
    expect(body.events[0]?.metadata).toEqual({ email: 'ada@example.com', plan: 'pro' });
  });
});
