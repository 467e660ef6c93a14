import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archiveEnv, readArchive } from '../helpers/archive-reader.ts';
import { documentedFetch } from '../helpers/openapi.ts';
import { cliResult, runTributary, startTributary } from '../helpers/processes.ts';
import { type S3Server, startS3Server } from '../helpers/s3-server.ts';
import { call, event, type Stack, startStack, waitFor } from '../helpers/stack.ts';

const DAY_MS = 86_400_000;
const lastLine = (stdout: string): Record<string, unknown> => cliResult(stdout);

describe('data-subject requests', () => {
  let s3: S3Server;
  let stack: Stack;
  let dir: string;
  let env: (extra?: Record<string, string>) => Record<string, string>;

  const send = async (events: Record<string, unknown>[]) => {
    const res = await call(stack.url, '/v1/events/batch', { body: { events } });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return res.body as { accepted: number; skipped: number; ids: string[] };
  };
  const rowsOf = async (userId: string) =>
    (
      await stack.env.pool.query<{ id: string; received_at: Date }>(
        'SELECT id, received_at FROM events WHERE user_id = $1',
        [userId],
      )
    ).rows;
  const waitStored = (ids: string[]) =>
    waitFor(
      async () => {
        const { rows } = await stack.env.pool.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM events WHERE id = ANY($1::uuid[])',
          [ids],
        );
        return rows[0]?.n === ids.length;
      },
      30_000,
      'events stored',
    );

  beforeAll(async () => {
    s3 = await startS3Server();
    dir = mkdtempSync(join(tmpdir(), 'tributary-dsar-'));
    env = (extra = {}) =>
      stack.env.env({
        ...archiveEnv(s3.config),
        ARCHIVE_WORK_DIR: join(dir, 'work'),
        RETENTION_DAYS: '400',
        RETENTION_SCHEDULE: 'off',
        DSAR_LOCK_TTL_MS: '3000',
        ...extra,
      });
    stack = await startStack({
      workers: 1,
      env: {
        ...archiveEnv(s3.config),
        ARCHIVE_WORK_DIR: join(dir, 'work'),
        RETENTION_DAYS: '400',
        RETENTION_SCHEDULE: 'off',
        DSAR_LOCK_TTL_MS: '3000',
      },
    });
  }, 60_000);

  afterAll(async () => {
    await stack?.close();
    await s3?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('opt-out: events of an opted-out subject are answered skipped and never stored; opting back in works', async () => {
    const put = await call(stack.url, '/v1/users/opt-1/opt-out', { method: 'PUT' });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ userId: 'opt-1', optedOut: true });
    const single = await call(stack.url, '/v1/events', { body: event({ userId: 'opt-1' }) });
    expect(single.body).toMatchObject({ status: 'skipped', reason: 'user_opt_out' });
    const batch = await send([event({ userId: 'opt-1' }), event({ userId: 'someone-else' })]);
    expect(batch).toMatchObject({ accepted: 1, skipped: 1 });
    await waitStored(batch.ids);
    expect(await rowsOf('opt-1')).toEqual([]);

    expect((await call(stack.url, '/v1/users/opt-1/opt-out', { method: 'DELETE' })).body).toMatchObject({
      optedOut: false,
    });
    const back = await send([event({ userId: 'opt-1' })]);
    expect(back.accepted).toBe(1);
    await waitStored(back.ids);
    expect((await rowsOf('opt-1')).length).toBe(1);
  });

  it('opt-out race: nothing received after the opt-out is stored, everything skipped stays out', async () => {
    const accepted = new Set<string>();
    const skipped = new Set<string>();
    let stop = false;
    const senders = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const events = Array.from({ length: 20 }, () => event({ userId: 'racer' }));
        const res = await call(stack.url, '/v1/events/batch', { body: { events } });
        const ids = new Set(res.body.ids as string[]);
        for (const e of events) (ids.has(e.id as string) ? accepted : skipped).add(e.id as string);
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    const put = await call(stack.url, '/v1/users/racer/opt-out', { method: 'PUT' });
    expect(put.status).toBe(200);
    // Once the opt-out call has been answered, nothing the API receives is stored.
    const since = Date.now();
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(senders);
    expect(skipped.size).toBeGreaterThan(0);
    await waitFor(async () => {
      const b = await call(stack.url, '/health/buffer', { key: null });
      return b.body.length === 0 && b.body.pending === 0;
    });
    const stored = await rowsOf('racer');
    for (const r of stored) {
      expect(accepted.has(r.id), `${r.id} stored though not accepted`).toBe(true);
      expect(r.received_at.getTime()).toBeLessThan(since);
    }
    expect(stored.length).toBeGreaterThan(0);
  });

  it('erasure removes the subject from the database, the buffer and the archive, and counts each', async () => {
    const subject = 'erase-me';
    const now = Date.now();
    // 30 old events (archived below), 20 in the database, 15 left in the buffer.
    const old = Array.from({ length: 30 }, (_, i) =>
      event({ userId: subject, timestamp: new Date(now - (100 + i) * DAY_MS).toISOString() }),
    );
    const others = Array.from({ length: 40 }, (_, i) =>
      event({ userId: `other-${i % 3}`, timestamp: new Date(now - (100 + i) * DAY_MS).toISOString() }),
    );
    const inDb = Array.from({ length: 20 }, () => event({ userId: subject }));
    const first = await send([...old, ...others, ...inDb]);
    await waitStored(first.ids);
    const pass = await runTributary(['retention'], env({ RETENTION_DAYS: '60' }));
    expect(pass.code, pass.stderr).toBe(0);
    expect(lastLine(pass.stdout).rowsArchived).toBe(70);

    await stack.workers[0]?.kill9();
    stack.workers.length = 0;
    const buffered = Array.from({ length: 15 }, () => event({ userId: subject }));
    await send(buffered);

    const erase = await call(stack.url, `/v1/users/${subject}/events`, { method: 'DELETE' });
    expect(erase.status).toBe(202);
    const requestId = erase.body.requestId as string;
    const status = await call(stack.url, `/v1/dsar/${requestId}`);
    expect(['pending', 'running']).toContain(status.body.status);

    // The worker comes back: it drops the subject's buffered events instead of storing them.
    await stack.addWorker();
    const done = await waitFor(
      async () => {
        const s = await call(stack.url, `/v1/dsar/${requestId}`);
        return s.body.status === 'completed' ? s.body : undefined;
      },
      60_000,
      'erasure completed',
    );
    expect(done.deleted).toEqual({ database: 20, buffer: 15, checkpoint: 0, archive: 30 });
    expect(done.archivesRewritten).toBeGreaterThan(0);
    expect(await rowsOf(subject)).toEqual([]);
    const archive = await readArchive(s3.config);
    expect(archive.rows.filter((r) => r.user_id === subject)).toEqual([]);
    expect(archive.rows.filter((r) => r.user_id?.startsWith('other-')).length).toBe(40);
    for (const [key, file] of archive.files) {
      expect(archive.manifests.get(key), key).toMatchObject({ rows: file.rows, sha256: file.sha256 });
    }
    // Events sent after the request are new: they are stored.
    const after = await send([event({ userId: subject })]);
    await waitStored(after.ids);
    expect((await rowsOf(subject)).length).toBe(1);
  });

  it('export streams every event of the subject from the database and the archive as NDJSON', async () => {
    const subject = 'export-me';
    const now = Date.now();
    const old = Array.from({ length: 25 }, (_, i) =>
      event({ userId: subject, timestamp: new Date(now - (80 + i) * DAY_MS).toISOString(), metadata: { i } }),
    );
    const recent = Array.from({ length: 35 }, (_, i) => event({ userId: subject, metadata: { i: 100 + i } }));
    const sent = await send([...old, ...recent]);
    await waitStored(sent.ids);
    const pass = await runTributary(['retention'], env({ RETENTION_DAYS: '60' }));
    expect(pass.code, pass.stderr).toBe(0);

    const res = await documentedFetch(`${stack.url}/v1/users/${subject}/events/export`, {
      headers: { 'x-api-key': 'test-admin-key-0123456789abcdef' },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/application\/x-ndjson/);
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.length).toBe(60);
    expect(lines.filter((l) => l.source === 'archive').length).toBe(25);
    expect(new Set(lines.map((l) => l.id))).toEqual(new Set(sent.ids));
    const byId = new Map([...old, ...recent].map((e) => [e.id, e]));
    for (const l of lines) {
      expect(l.userId).toBe(subject);
      expect(l.metadata).toEqual((byId.get(l.id) as { metadata: unknown }).metadata);
    }
  });

  it('an erasure job killed midway is finished by another process', async () => {
    const subject = 'crash-me';
    const sent = await send(Array.from({ length: 50 }, () => event({ userId: subject })));
    await waitStored(sent.ids);
    // A second API process takes the request and is killed as soon as it starts erasing.
    const api2 = await startTributary('serve', env());
    const erase = await call(api2.url, `/v1/users/${subject}/events`, { method: 'DELETE' });
    expect(erase.status).toBe(202);
    await api2.kill9();
    const done = await waitFor(
      async () => {
        const s = await call(stack.url, `/v1/dsar/${erase.body.requestId}`);
        return s.body.status === 'completed' ? s.body : undefined;
      },
      60_000,
      'erasure completed by another process',
    );
    expect(done.deleted.database).toBe(50);
    expect(await rowsOf(subject)).toEqual([]);
  });
});
