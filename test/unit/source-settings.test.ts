import { describe, expect, it } from 'vitest';
import { BatchSizer } from '../../src/sources/batch-size.ts';
import { nextLink, retryAfterMs } from '../../src/sources/http.ts';
import { backoffMs } from '../../src/sources/runner.ts';
import { SourceConfig, scrub, secretStrings, splitSecrets } from '../../src/sources/settings.ts';
import { signatureOf, signatureValid } from '../../src/sources/webhook.ts';

const table = {
  kind: 'postgres',
  name: 'orders',
  service: 'shop',
  connection: 'postgres://reader:p%40ss-word@db.example:5432/shop',
  table: 'public.orders',
  cursorColumn: 'updated_at',
  idColumn: 'id',
  type: 'order',
};

const paths = (input: unknown) => {
  const r = SourceConfig.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => i.path.join('.'));
};

describe('source configurations', () => {
  it('fills defaults and refuses a bad one naming the field', () => {
    expect(SourceConfig.parse(table)).toMatchObject({ intervalSeconds: 60, maxBatchRows: 5_000 });
    expect(paths({ ...table, table: 'orders; DROP TABLE x' })).toEqual(['table']);
    expect(paths({ ...table, typeColumn: 'kind' })).toEqual(['typeColumn']);
    expect(paths({ ...table, type: undefined })).toEqual(['type']);
    expect(paths({ ...table, connection: 'mysql://x' })).toEqual(['connection']);
    expect(paths({ ...table, intervalSeconds: 0 })).toEqual(['intervalSeconds']);
    expect(paths({ ...table, surprise: 1 })).toEqual(['']);
    expect(paths({ ...table, kind: 'ftp' })).toEqual(['kind']);
    const api = {
      kind: 'http',
      name: 'a',
      service: 's',
      url: 'https://api.example/x',
      idField: 'id',
      type: 't',
      timestampField: 'at',
    };
    expect(paths(api)).toEqual([]);
    expect(paths({ ...api, url: 'file:///etc/passwd' })).toEqual(['url']);
    expect(paths({ ...api, pagination: { type: 'offset', limit: 0 } })).toEqual(['pagination.limit']);
    expect(paths({ ...api, auth: { type: 'bearer' } })).toEqual(['auth.token']);
    expect(paths({ ...api, idField: 'a..b' })).toEqual(['idField']);
    const hook = {
      kind: 'webhook',
      name: 'h',
      service: 's',
      secret: 'short',
      signatureHeader: 'X-Sig',
      idField: 'id',
      type: 't',
    };
    expect(paths(hook)).toEqual(['secret']);
    expect(paths({ ...hook, secret: 'long-enough-secret-123', signatureHeader: 'Bad Header' })).toEqual([
      'signatureHeader',
    ]);
  });

  it('splits secrets from settings; an API’s auth keeps only its kind in the settings', () => {
    const split = splitSecrets(SourceConfig.parse(table));
    expect(split.secrets).toEqual({ connection: table.connection });
    expect(split.settings).not.toHaveProperty('connection');
    expect(split.settings).not.toHaveProperty('name');
    const api = SourceConfig.parse({
      kind: 'http',
      name: 'a',
      service: 's',
      url: 'https://api.example/x',
      idField: 'id',
      type: 't',
      timestampField: 'at',
      auth: { type: 'header', name: 'X-Key', value: 'v-123456' },
    });
    expect(splitSecrets(api)).toMatchObject({
      settings: { auth: { type: 'header', name: 'X-Key' } },
      secrets: { auth: { type: 'header', name: 'X-Key', value: 'v-123456' } },
    });
  });

  it('scrubs every secret from a message: the whole URL, its password as written and decoded, basic credentials', () => {
    const secrets = secretStrings({ connection: table.connection });
    const message = `could not connect to ${table.connection}: password p@ss-word (p%40ss-word) refused`;
    expect(scrub(message, secrets)).toBe(
      'could not connect to [secret]: password [secret] ([secret]) refused',
    );
    const basic = secretStrings({ auth: { type: 'basic', username: 'u', password: 'pw-0000' } });
    expect(scrub(`header Basic ${Buffer.from('u:pw-0000').toString('base64')}`, basic)).toBe(
      'header Basic [secret]',
    );
  });
});

describe('HTTP API pagination and retries', () => {
  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(retryAfterMs('3')).toBe(3_000);
    expect(retryAfterMs(new Date(Date.UTC(2026, 0, 1, 0, 0, 10)).toUTCString(), Date.UTC(2026, 0, 1))).toBe(
      10_000,
    );
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(null)).toBeUndefined();
  });

  it('finds rel="next" in a Link header, relative or absolute, among other relations', () => {
    const base = 'https://api.example/v1/items?page=1';
    expect(nextLink('<https://api.example/v1/items?page=2>; rel="next", <…>; rel="last"', base)).toBe(
      'https://api.example/v1/items?page=2',
    );
    expect(nextLink('</v1/items?page=3>; rel=next', base)).toBe('https://api.example/v1/items?page=3');
    expect(nextLink('<?page=4>; title="x"; rel="prev next"', base)).toBe(
      'https://api.example/v1/items?page=4',
    );
    expect(nextLink('<https://api.example/v1/items?page=1>; rel="prev"', base)).toBeUndefined();
    expect(nextLink(null, base)).toBeUndefined();
  });

  it('backs off from 1 s doubling to 5 min', () => {
    for (const [failures, base] of [
      [0, 1_000],
      [3, 8_000],
      [30, 300_000],
    ] as const) {
      const ms = backoffMs(failures);
      expect(ms).toBeGreaterThanOrEqual(base * 0.8);
      expect(ms).toBeLessThanOrEqual(base * 1.2);
    }
  });
});

describe('webhook signatures', () => {
  const secret = 'whsec-0123456789abcdef';
  const body = '{"id":"d-1"}';
  it('accepts the HMAC-SHA256 hex with or without sha256=, and nothing else', () => {
    const sig = signatureOf(secret, body);
    expect(signatureValid(secret, body, sig)).toBe(true);
    expect(signatureValid(secret, body, sig.slice(7))).toBe(true);
    expect(signatureValid(secret, body, sig.toUpperCase().replace('SHA256=', 'sha256='))).toBe(true);
    expect(signatureValid(secret, Buffer.from(body), sig)).toBe(true);
    expect(signatureValid(secret, `${body}\n`, sig)).toBe(false);
    expect(signatureValid('another-secret-000000', body, sig)).toBe(false);
    expect(signatureValid(secret, body, undefined)).toBe(false);
    expect(signatureValid(secret, body, 'sha256=abc')).toBe(false);
    expect(signatureValid(secret, body, `${sig}00`)).toBe(false);
  });
});

describe('batch sizes by measurement', () => {
  it('grows while batches are quick, shrinks when slow, at most ×2 or ÷2 a step, within its bounds', () => {
    const s = new BatchSizer({ max: 10_000, targetMs: 500, start: 500 });
    s.measured(500, 50);
    expect(s.size).toBe(1_000);
    s.measured(1_000, 100);
    expect(s.size).toBe(2_000);
    s.measured(2_000, 4_000);
    expect(s.size).toBe(1_000);
    s.measured(1_000, 500);
    expect(s.size).toBe(1_000);
    s.measured(10, 1);
    expect(s.size).toBe(1_000);
    for (let i = 0; i < 10; i++) s.measured(s.size, 1);
    expect(s.size).toBe(10_000);
    for (let i = 0; i < 20; i++) s.measured(s.size, 1e6);
    expect(s.size).toBe(10);
  });
});
