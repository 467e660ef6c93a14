import { describe, expect } from 'vitest';
import { readArchive } from '../helpers/archive-reader.ts';
import { archiveStackTest } from '../helpers/fixtures.ts';
import { documentedFetch } from '../helpers/openapi.ts';
import { cliResult, runTributary, startTributary } from '../helpers/processes.ts';
import { call, event, type Stack, waitFor } from '../helpers/stack.ts';
import { waitUntilStored } from '../helpers/stored-once.ts';

const DAY_MS = 86_400_000;
const lastLine = (stdout: string): Record<string, unknown> => cliResult(stdout);

const test = archiveStackTest({ workers: 1, settings: { DSAR_LOCK_TTL_MS: '3000' } });

async function send(stack: Stack, events: Record<string, unknown>[]) {
  const res = await call(stack.url, '/v1/events/batch', { body: { events } });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body as { accepted: number; skipped: number; ids: string[] };
}

async function rowsOf(stack: Stack, userId: string) {
  const { rows } = await stack.env.pool.query<{ id: string; received_at: Date }>(
    'SELECT id, received_at FROM events WHERE user_id = $1',
    [userId],
  );
  return rows;
}

const waitStored = (stack: Stack, ids: string[]) => waitUntilStored(stack.env.pool, ids);

describe('data-subject requests', () => {
  test('opt-out: events of an opted-out subject are answered skipped and never stored; opting back in works', async ({
    stack,
  }) => {
    const put = await call(stack.url, '/v1/users/opt-1/opt-out', { method: 'PUT' });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ userId: 'opt-1', optedOut: true });
    const single = await call(stack.url, '/v1/events', { body: event({ userId: 'opt-1' }) });
    expect(single.body).toMatchObject({ status: 'skipped', reason: 'user_opt_out' });
    const batch = await send(stack, [event({ userId: 'opt-1' }), event({ userId: 'someone-else' })]);
    expect(batch).toMatchObject({ accepted: 1, skipped: 1 });
    await waitStored(stack, batch.ids);
    expect(await rowsOf(stack, 'opt-1')).toEqual([]);

    expect((await call(stack.url, '/v1/users/opt-1/opt-out', { method: 'DELETE' })).body).toMatchObject({
      optedOut: false,
    });
    const back = await send(stack, [event({ userId: 'opt-1' })]);
    expect(back.accepted).toBe(1);
    await waitStored(stack, back.ids);
    expect((await rowsOf(stack, 'opt-1')).length).toBe(1);
  });

  test('opt-out race: nothing received after the opt-out is stored, everything skipped stays out', async ({
    stack,
  }) => {
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
    let since: number;
    try {
      // Some of the subject's events accepted before the opt-out …
      await waitFor(async () => accepted.size >= 100, 10_000, 'events accepted before the opt-out');
      const put = await call(stack.url, '/v1/users/racer/opt-out', { method: 'PUT' });
      expect(put.status).toBe(200);
      // Once the opt-out call has been answered, nothing the API receives is stored.
      since = Date.now();
      // … and some skipped after it.
      await waitFor(async () => skipped.size >= 100, 10_000, 'events skipped after the opt-out');
    } finally {
      stop = true;
      await Promise.all(senders);
    }
    expect(skipped.size).toBeGreaterThan(0);
    await waitFor(async () => {
      const b = await call(stack.url, '/health/buffer');
      return b.body.length === 0 && b.body.pending === 0;
    });
    const stored = await rowsOf(stack, 'racer');
    for (const r of stored) {
      expect(accepted.has(r.id), `${r.id} stored though not accepted`).toBe(true);
      expect(r.received_at.getTime()).toBeLessThan(since);
    }
    expect(stored.length).toBeGreaterThan(0);
  });

  test('erasure removes the subject from the database, the buffer and the archive, and counts each', async ({
    stack,
    s3,
  }) => {
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
    const first = await send(stack, [...old, ...others, ...inDb]);
    await waitStored(stack, first.ids);
    const pass = await runTributary(['retention'], stack.env.env({ RETENTION_DAYS: '60' }));
    expect(pass.code, pass.stderr).toBe(0);
    expect(lastLine(pass.stdout).rowsArchived).toBe(70);

    await stack.workers[0]?.kill9();
    stack.workers.length = 0;
    const buffered = Array.from({ length: 15 }, () => event({ userId: subject }));
    await send(stack, buffered);

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
    expect(done.deleted).toEqual({
      database: 20,
      buffer: 15,
      checkpoint: 0,
      archive: 30,
      deadLetter: 0,
      materialized: 0,
    });
    expect(done.archivesRewritten).toBeGreaterThan(0);
    expect(await rowsOf(stack, subject)).toEqual([]);
    const archive = await readArchive(s3.config);
    expect(archive.rows.filter((r) => r.user_id === subject)).toEqual([]);
    expect(archive.rows.filter((r) => r.user_id?.startsWith('other-')).length).toBe(40);
    for (const [key, file] of archive.files) {
      expect(archive.manifests.get(key), key).toMatchObject({ rows: file.rows, sha256: file.sha256 });
    }
    // Events sent after the request are new: they are stored.
    const after = await send(stack, [event({ userId: subject })]);
    await waitStored(stack, after.ids);
    expect((await rowsOf(stack, subject)).length).toBe(1);
  });

  test('export streams every event of the subject from the database and the archive as NDJSON', async ({
    stack,
  }) => {
    const subject = 'export-me';
    const now = Date.now();
    // Two services, so a dsar key bound to one of them can be seen to export only its own.
    const service = (i: number) => (i % 2 ? 'billing' : 'checkout');
    const old = Array.from({ length: 25 }, (_, i) =>
      event({
        userId: subject,
        service: service(i),
        timestamp: new Date(now - (80 + i) * DAY_MS).toISOString(),
        metadata: { i },
      }),
    );
    const recent = Array.from({ length: 35 }, (_, i) =>
      event({ userId: subject, service: service(i), metadata: { i: 100 + i } }),
    );
    const sent = await send(stack, [...old, ...recent]);
    await waitStored(stack, sent.ids);
    const pass = await runTributary(['retention'], stack.env.env({ RETENTION_DAYS: '60' }));
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

    // A dsar key bound to `billing` exports that service's events only, archive included.
    const key = await call(stack.url, '/v1/admin/keys', {
      body: { name: 'billing dsar', scopes: ['dsar'], services: ['billing'] },
    });
    expect(key.status).toBe(201);
    const bound = await documentedFetch(`${stack.url}/v1/users/${subject}/events/export`, {
      headers: { 'x-api-key': key.body.key },
    });
    expect(bound.status).toBe(200);
    const billing = (await bound.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; service: string; source: string });
    const billed = [...old, ...recent].filter((e) => e.service === 'billing');
    expect(new Set(billing.map((l) => l.id))).toEqual(new Set(billed.map((e) => e.id)));
    expect(billing.filter((l) => l.source === 'archive')).toHaveLength(12);
    expect(billing).toHaveLength(29);
  });

  test('an erasure job killed midway is finished by another process', async ({ stack }) => {
    const subject = 'crash-me';
    const sent = await send(
      stack,
      Array.from({ length: 50 }, () => event({ userId: subject })),
    );
    await waitStored(stack, sent.ids);
    // A second API process takes the request and is killed as soon as it starts erasing.
    const api2 = await startTributary('serve', stack.env.env());
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
    expect(await rowsOf(stack, subject)).toEqual([]);
  });

  test('an erasure takes over a retention lease left by a runner silent for longer than DSAR_LOCK_TTL_MS', async ({
    stack,
  }) => {
    const subject = 'lease-me';
    const sent = await send(
      stack,
      Array.from({ length: 5 }, () => event({ userId: subject })),
    );
    await waitStored(stack, sent.ids);
    // A runner that died holding the lease 10 s ago: past DSAR_LOCK_TTL_MS (3 s), though well
    // within the 60 s the erasure once used for this lease whatever DSAR_LOCK_TTL_MS said.
    const { rows } = await stack.env.pool.query<{ id: string }>(
      `INSERT INTO retention_runs (trigger, status, holder, heartbeat_at)
       VALUES ('schedule', 'running', 'dead-runner', now() - interval '10 seconds') RETURNING id`,
    );
    const stale = (rows[0] as { id: string }).id;
    const erase = await call(stack.url, `/v1/users/${subject}/events`, { method: 'DELETE' });
    expect(erase.status).toBe(202);
    const done = await waitFor(
      async () => {
        const s = await call(stack.url, `/v1/dsar/${erase.body.requestId}`);
        return s.body.status === 'completed' ? s.body : undefined;
      },
      20_000,
      'erasure completed past the stale lease',
    );
    expect(done.deleted.database).toBe(5);
    const runs = await stack.env.pool.query<{ id: string; status: string; trigger: string }>(
      `SELECT id, status, trigger FROM retention_runs WHERE id = $1 OR (trigger = 'erasure' AND started_at > now() - interval '1 minute')`,
      [stale],
    );
    expect(runs.rows.find((r) => r.id === stale)?.status).toBe('abandoned');
    expect(runs.rows.some((r) => r.trigger === 'erasure' && r.status === 'completed')).toBe(true);
  });
});
