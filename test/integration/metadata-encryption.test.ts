import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferKeys } from '../../src/buffer/keys.ts';
import { readArchive } from '../helpers/archive-reader.ts';
import { runTributary, startTributary, type TributaryProcess } from '../helpers/processes.ts';
import { call, event, type Stack, startStack, waitFor } from '../helpers/stack.ts';

const DAY_MS = 86_400_000;
const KEY_A = `key-a:${randomBytes(32).toString('base64')}`;
const KEY_B = `key-b:${randomBytes(32).toString('base64')}`;
const SUBJECT = 'enc-subject';

/** Sensitive keys as sent, by a marker that makes each event's values its own. */
const metadataOf = (n: number) => ({
  email: `user${n}@example.com`,
  phone: { country: '+44', number: `7946 ${n}`, verified: n % 2 === 0 },
  plan: 'pro',
  n,
});

describe('encryption at rest of configured metadata keys', () => {
  let stack: Stack;
  let dir: string;
  let api: TributaryProcess;
  const sent = new Map<string, Record<string, unknown>>();

  const settings = (keys: string) => ({
    ENCRYPT_METADATA_KEYS: 'email,phone',
    METADATA_ENCRYPTION_KEYS: keys,
    ARCHIVE_DIR: join(dir, 'archive'),
    ARCHIVE_WORK_DIR: join(dir, 'work'),
    RETENTION_DAYS: '400',
    RETENTION_SCHEDULE: 'off',
  });
  const send = async (url: string, events: Record<string, unknown>[]) => {
    const res = await call(url, '/v1/events/batch', { body: { events } });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    for (const e of events) sent.set(e.id as string, e.metadata as Record<string, unknown>);
    return res.body.ids as string[];
  };
  const storedMetadata = async (ids: string[]) => {
    const { rows } = await stack.env.pool.query<{ id: string; metadata: Record<string, unknown> }>(
      'SELECT id, metadata FROM events WHERE id = ANY($1::uuid[])',
      [ids],
    );
    return rows;
  };
  const waitStored = (ids: string[]) =>
    waitFor(async () => (await storedMetadata(ids)).length === ids.length, 30_000, 'events stored');
  const expectSealed = (metadata: Record<string, unknown>, keyId: string, n: number) => {
    expect(metadata.email).toMatch(new RegExp(`^enc:v1:${keyId}:[A-Za-z0-9_-]+$`));
    expect(metadata.phone).toMatch(new RegExp(`^enc:v1:${keyId}:[A-Za-z0-9_-]+$`));
    expect(metadata.plan).toBe('pro');
    expect(metadata.n).toBe(n);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tributary-encryption-'));
    // No worker yet: what the API wrote stays in the stream to be read.
    stack = await startStack({ env: settings(KEY_A) });
    api = stack.api;
  }, 60_000);

  afterAll(async () => {
    await api?.kill9();
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a key that is not 32 bytes of base64 stops the process, naming the variable', async () => {
    const bad = await runTributary(
      ['serve'],
      stack.env.env(settings(`key-a:${randomBytes(16).toString('base64')}`)),
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('METADATA_ENCRYPTION_KEYS');
    expect(bad.stderr).toContain('exactly 32 bytes');
  });

  it('the buffer and the table hold ciphertext for the configured keys and plain values for the rest', async () => {
    const single = event({ userId: SUBJECT, metadata: metadataOf(0) });
    const res = await call(api.url, '/v1/events', { body: single });
    expect(res.status).toBe(202);
    sent.set(single.id as string, single.metadata as Record<string, unknown>);
    const batch = Array.from({ length: 5 }, (_, i) =>
      event({ userId: SUBJECT, metadata: metadataOf(i + 1) }),
    );
    const ids = [single.id as string, ...(await send(api.url, batch))];

    const keys = bufferKeys(stack.env.prefix, 8);
    const entries = (await Promise.all(keys.streams.map((s) => stack.env.redis.xrange(s, '-', '+')))).flat();
    expect(entries.length).toBe(6);
    for (const [, fields] of entries) {
      const raw = fields[fields.indexOf('e') + 1] as string;
      expect(raw).not.toContain('@example.com');
      const e = JSON.parse(raw) as { id: string; metadata: Record<string, unknown> };
      expectSealed(e.metadata, 'key-a', sent.get(e.id)?.n as number);
    }

    await stack.addWorker();
    await waitStored(ids);
    for (const row of await storedMetadata(ids))
      expectSealed(row.metadata, 'key-a', sent.get(row.id)?.n as number);
  });

  it('GET /v1/events returns the values decrypted', async () => {
    const res = await call(api.url, `/v1/events?userId=${SUBJECT}&limit=100`);
    expect(res.status).toBe(200);
    expect(res.body.events.length).toBe(6);
    for (const e of res.body.events) expect(e.metadata).toEqual(sent.get(e.id));
  });

  it('after a restart with a new key first, old rows still decrypt and new rows use the new key', async () => {
    await api.stop();
    api = await startTributary('serve', stack.env.env(settings(`${KEY_B},${KEY_A}`)));
    const ids = await send(
      api.url,
      Array.from({ length: 4 }, (_, i) => event({ userId: SUBJECT, metadata: metadataOf(10 + i) })),
    );
    await waitStored(ids);
    for (const row of await storedMetadata(ids))
      expectSealed(row.metadata, 'key-b', sent.get(row.id)?.n as number);

    const res = await call(api.url, `/v1/events?userId=${SUBJECT}&limit=100`);
    expect(res.body.events.length).toBe(10);
    for (const e of res.body.events) expect(e.metadata).toEqual(sent.get(e.id));
  });

  it('the DSAR export returns decrypted values from the database and the archive; the archive holds ciphertext', async () => {
    const now = Date.now();
    const old = Array.from({ length: 3 }, (_, i) =>
      event({
        userId: SUBJECT,
        timestamp: new Date(now - (80 + i) * DAY_MS).toISOString(),
        metadata: metadataOf(20 + i),
      }),
    );
    await waitStored(await send(api.url, old));
    const pass = await runTributary(
      ['retention'],
      stack.env.env({ ...settings(`${KEY_B},${KEY_A}`), RETENTION_DAYS: '60' }),
    );
    expect(pass.code, pass.stderr).toBe(0);

    const archive = await readArchive({
      ARCHIVE_DIR: join(dir, 'archive'),
      ARCHIVE_S3_REGION: 'us-east-1',
      ARCHIVE_S3_FORCE_PATH_STYLE: true,
      ARCHIVE_S3_CHECKSUMS: 'when_supported',
    });
    expect(archive.rows.length).toBe(3);
    for (const row of archive.rows) {
      expectSealed(JSON.parse(row.metadata as string), 'key-b', sent.get(row.id)?.n as number);
    }

    const res = await call(api.url, `/v1/users/${SUBJECT}/events/export`);
    expect(res.status).toBe(200);
    const lines = (res.body as string)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; source: string; metadata: unknown });
    expect(lines.length).toBe(sent.size);
    expect(lines.filter((l) => l.source === 'archive').length).toBe(3);
    for (const l of lines) expect(l.metadata, l.source).toEqual(sent.get(l.id));
  });
});
