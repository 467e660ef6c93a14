import { describe, expect } from 'vitest';
import {
  agedEvents,
  expectSameEvent,
  idsInDatabase,
  ingestAll,
  isExpired,
  PASS_RETENTION,
  type SentEvent,
} from '../helpers/aged-events.ts';
import { readArchive } from '../helpers/archive-reader.ts';
import { archiveStackTest } from '../helpers/fixtures.ts';
import { cliResult, runTributary } from '../helpers/processes.ts';
import { call, type Stack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/** The CLI prints its result as the last line of stdout, after its JSON log lines. */
const lastLine = (stdout: string): Record<string, unknown> => cliResult(stdout);

// Ingest accepts a year back (the fixture's settings); the passes below run with 60 days (audit: 150).
const test = archiveStackTest({ workers: 1 });

/** What the checkout plan says of an event: its orders lack the `orderId` it requires. */
const violationsOf = (e: SentEvent) =>
  e.service === 'checkout' && e.type === 'order.placed'
    ? [{ path: 'metadata.orderId', code: 'required', message: 'required by the tracking plan' }]
    : null;

/** A retention or restore run's environment. */
const passEnv = (stack: Stack, extra: Record<string, string> = {}) =>
  stack.env.env({ ...PASS_RETENTION, ...extra });

describe('retention pass against a real S3 server', () => {
  let sent: SentEvent[];
  let before: Map<string, Record<string, unknown>>;
  let firstRun: Record<string, unknown>;

  test.beforeAll(async ({ stack }) => {
    sent = agedEvents(1_200, 1);
    // A tracking plan in `warn` (§14) that checkout's orders fail: stored with their violations.
    const plan = await call(stack.url, '/v1/schemas/checkout/order.placed', {
      method: 'PUT',
      body: { schema: { type: 'object', required: ['orderId'] } },
    });
    expect(plan.status).toBe(200);
    await ingestAll(stack, sent);
    const { rows } = await stack.env.pool.query<Record<string, unknown>>(
      `SELECT id, occurred_at::text, received_at::text, service, type, user_id, message, metadata::text, anonymized, key_id,
              anonymous_id, violations::text
         FROM events`,
    );
    before = new Map(rows.map((r) => [r.id as string, r]));
    const pass = await runTributary(['retention'], passEnv(stack, { RETENTION_BATCH_ROWS: '100' }));
    expect(pass.code, pass.stderr).toBe(0);
    firstRun = lastLine(pass.stdout);
  }, 180_000);

  test('archives every expired row exactly once with equal values, deletes them and leaves the rest untouched', async ({
    stack,
    s3,
  }) => {
    const expired = sent.filter(isExpired);
    const kept = sent.filter((e) => !isExpired(e));
    expect(expired.length).toBeGreaterThan(400);
    expect(kept.length).toBeGreaterThan(300);

    const archive = await readArchive(s3.config);
    const byId = new Map<string, number>();
    for (const r of archive.rows) byId.set(r.id, (byId.get(r.id) ?? 0) + 1);
    expect(archive.rows.length).toBe(expired.length);
    for (const e of expired) {
      expect(byId.get(e.id), e.id).toBe(1);
      expectSameEvent(archive.rows.find((r) => r.id === e.id) as never, e);
    }
    // Tracking-plan violations are archived with their rows (§14).
    for (const r of archive.rows) {
      const e = expired.find((x) => x.id === r.id) as SentEvent;
      expect(r.violations === null ? null : JSON.parse(r.violations), r.id).toEqual(violationsOf(e));
    }
    expect(archive.rows.some((r) => r.violations !== null)).toBe(true);
    // The key that wrote each row is archived with it (§11: a forged event stays traceable).
    expect(new Set(archive.rows.map((r) => r.key_id))).toEqual(new Set(['admin-bootstrap']));
    // Typed columns, zstd, and a manifest that matches every object.
    expect(archive.columnTypes.occurred_at).toBe('TIMESTAMP WITH TIME ZONE');
    expect(archive.columnTypes.metadata).toBe('JSON');
    expect(archive.columnTypes.violations).toBe('JSON');
    expect(archive.codecs).toEqual(['ZSTD']);
    for (const [key, file] of archive.files) {
      const manifest = archive.manifests.get(key);
      expect(manifest, `manifest of ${key}`).toBeDefined();
      expect(manifest).toMatchObject({
        rows: file.rows,
        bytes: file.bytes,
        sha256: file.sha256,
        schemaVersion: 4,
      });
    }

    const left = await idsInDatabase(
      stack,
      sent.map((e) => e.id),
    );
    for (const e of expired) expect(left.has(e.id), `${e.id} still in PostgreSQL`).toBe(false);
    const { rows } = await stack.env.pool.query<Record<string, unknown>>(
      `SELECT id, occurred_at::text, received_at::text, service, type, user_id, message, metadata::text, anonymized, key_id,
              anonymous_id, violations::text
         FROM events`,
    );
    expect(rows.length).toBe(kept.length);
    for (const r of rows) expect(r).toEqual(before.get(r.id as string));
  });

  test('drops whole partitions past the longest retention and records every step', async ({ stack, s3 }) => {
    expect(firstRun).toMatchObject({ status: 'completed', rowsArchived: sent.filter(isExpired).length });
    const dropped = firstRun.partitionsDropped as string[];
    expect(dropped.length).toBeGreaterThanOrEqual(1);
    const { rows: tables } = await stack.env.pool.query(
      'SELECT relname FROM pg_class WHERE relname = ANY($1)',
      [dropped],
    );
    expect(tables).toEqual([]);

    const run = await call(stack.url, `/v1/admin/retention/runs/${firstRun.id}`);
    expect(run.status).toBe(200);
    const steps = (run.body.steps as { step: string }[]).map((s) => s.step);
    for (const s of [
      'partition.detached',
      'archive.verified',
      'partition.dropped',
      'rows.deleted',
      'archive.complete',
    ])
      expect(steps, s).toContain(s);
    // Partly expired months are deleted in batches of RETENTION_BATCH_ROWS.
    expect(steps.filter((s) => s === 'rows.deleted').length).toBeGreaterThan(2);

    const listed = await call(stack.url, '/v1/admin/archives?limit=1000');
    expect(listed.status).toBe(200);
    expect(listed.body.location).toMatch(/^s3:\/\//);
    expect(listed.body.archives.length).toBe((await readArchive(s3.config)).files.size);
    for (const a of listed.body.archives)
      expect(a).toMatchObject({ status: 'complete', sha256: expect.any(String) });
    const total = (listed.body.archives as { rowCount: number }[]).reduce((n, a) => n + a.rowCount, 0);
    expect(total).toBe(sent.filter(isExpired).length);
    expect(
      (await call(stack.url, '/v1/admin/retention/runs/00000000-0000-0000-0000-000000000000')).status,
    ).toBe(404);
  });

  test('a second pass archives nothing and changes nothing', async ({ stack, s3 }) => {
    const keysBefore = (await readArchive(s3.config)).keys;
    const pass = await runTributary(['retention'], passEnv(stack));
    expect(pass.code, pass.stderr).toBe(0);
    expect(lastLine(pass.stdout)).toMatchObject({ status: 'completed', rowsArchived: 0, rowsDeleted: 0 });
    expect((await readArchive(s3.config)).keys).toEqual(keysBefore);
  });

  test('POST /v1/admin/retention/run starts a pass and GET …/runs/:runId reports it', async ({ stack }) => {
    const started = await call(stack.url, '/v1/admin/retention/run', { method: 'POST' });
    expect(started.status).toBe(202);
    const runId = started.body.runId as string;
    const run = await waitFor(
      async () => {
        const res = await call(stack.url, `/v1/admin/retention/runs/${runId}`);
        return res.body.status === 'running' ? null : res;
      },
      20_000,
      'the run finished',
    );
    expect(run.body).toMatchObject({ id: runId, trigger: 'manual', status: 'completed' });
    const forbidden = await call(stack.url, '/v1/admin/retention/run', { method: 'POST', key: 'nope' });
    expect(forbidden.status).toBe(401);
  });

  test('restores a month from the archive (idempotently), holds it, then removes it again without a second copy', async ({
    stack,
    s3,
  }) => {
    // The dropped month holding the most events (others of the accepted window are empty).
    const months = (firstRun.partitionsDropped as string[]).map((p) =>
      p.replace(/^events_(\d{4})_(\d{2})$/, '$1-$2'),
    );
    const count = (m: string) => sent.filter((e) => e.timestamp.startsWith(m)).length;
    const month = months.sort((a, b) => count(b) - count(a))[0] as string;
    const inMonth = sent.filter((e) => isExpired(e) && e.timestamp.startsWith(month));
    expect(inMonth.length).toBeGreaterThan(10);

    const restored = await runTributary(['restore', '--from', month], passEnv(stack));
    expect(restored.code, restored.stderr).toBe(0);
    expect(lastLine(restored.stdout)).toMatchObject({
      status: 'ok',
      rows: inMonth.length,
      inserted: inMonth.length,
    });
    const { rows } = await stack.env.pool.query<Record<string, unknown>>(
      `SELECT id, occurred_at::text, received_at::text, service, type, user_id, message, metadata::text, anonymized, key_id,
              anonymous_id, violations::text
         FROM events WHERE id = ANY($1::uuid[])`,
      [inMonth.map((e) => e.id)],
    );
    expect(rows.length).toBe(inMonth.length);
    for (const r of rows) expect(r).toEqual(before.get(r.id as string));

    const again = await runTributary(['restore', '--from', month, '--to', month], passEnv(stack));
    expect(lastLine(again.stdout)).toMatchObject({ rows: inMonth.length, inserted: 0 });

    // On hold (RESTORE_HOLD_DAYS, default 7): a pass leaves the month alone.
    const archiveBefore = await readArchive(s3.config);
    const held = await runTributary(['retention'], passEnv(stack));
    expect(lastLine(held.stdout)).toMatchObject({ status: 'completed', rowsArchived: 0 });
    expect(
      (
        await idsInDatabase(
          stack,
          inMonth.map((e) => e.id),
        )
      ).size,
    ).toBe(inMonth.length);

    // Restored with no hold: the next pass deletes exactly those rows and archives nothing twice.
    await runTributary(['restore', '--from', month], passEnv(stack, { RESTORE_HOLD_DAYS: '0' }));
    const released = await runTributary(['retention'], passEnv(stack));
    expect(lastLine(released.stdout)).toMatchObject({ status: 'completed', rowsArchived: 0 });
    expect(
      (
        await idsInDatabase(
          stack,
          inMonth.map((e) => e.id),
        )
      ).size,
    ).toBe(0);
    const archiveAfter = await readArchive(s3.config);
    expect(archiveAfter.keys).toEqual(archiveBefore.keys);
    expect(archiveAfter.rows.length).toBe(sent.filter(isExpired).length);
  });

  test('refuses bad restore arguments with a usage error', async ({ stack }) => {
    const bad = await runTributary(['restore', '--from', '2026-13'], passEnv(stack));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/YYYY-MM/);
  });
});
