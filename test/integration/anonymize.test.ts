import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agedEvents, ingestAll, PASS_RETENTION, type SentEvent } from '../helpers/aged-events.ts';
import { archiveEnv, readArchive } from '../helpers/archive-reader.ts';
import { cliResult, runTributary } from '../helpers/processes.ts';
import { call, type Stack, startStack } from '../helpers/stack.ts';

const SECRET = 'anonymize-test-secret-0123456789';
/** Computed here independently of the service's code. */
const hmac = (userId: string) => createHmac('sha256', SECRET).update(userId).digest('hex');
const lastLine = (stdout: string): Record<string, unknown> => cliResult(stdout);

describe('anonymisation', () => {
  let stack: Stack;
  let workDir: string;
  let archiveDir: string;
  let sent: SentEvent[];
  const anonEnv = (extra: Record<string, string> = {}) =>
    stack.env.env({
      RETENTION_DAYS: '400',
      ARCHIVE_DIR: archiveDir,
      ARCHIVE_WORK_DIR: workDir,
      ANONYMIZE_AFTER_DAYS: '30',
      ANONYMIZE_SECRET: SECRET,
      PII_METADATA_KEYS: 'email, ip',
      RETENTION_BATCH_ROWS: '100',
      ...extra,
    });
  const rowsOf = async () =>
    (
      await stack.env.pool.query<Record<string, unknown>>(
        'SELECT id, user_id, anonymous_id, metadata, anonymized, message, type FROM events ORDER BY id',
      )
    ).rows;

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'tributary-anon-work-'));
    archiveDir = mkdtempSync(join(tmpdir(), 'tributary-anon-archive-'));
    stack = await startStack({ workers: 1, env: { RETENTION_DAYS: '400', RETENTION_SCHEDULE: 'off' } });
    sent = agedEvents(800, 7);
    await ingestAll(stack, sent);
  }, 120_000);

  afterAll(async () => {
    await stack?.close();
    rmSync(workDir, { recursive: true, force: true });
    rmSync(archiveDir, { recursive: true, force: true });
  });

  it('pseudonymises user ids and anonymous ids and strips PII keys of rows past ANONYMIZE_AFTER_DAYS, idempotently', async () => {
    const pass = await runTributary(['retention'], anonEnv());
    expect(pass.code, pass.stderr).toBe(0);
    const old = sent.filter((e) => e.ageDays > 31);
    const recent = sent.filter((e) => e.ageDays < 29);
    expect(lastLine(pass.stdout)).toMatchObject({ status: 'completed', rowsArchived: 0 });
    expect(lastLine(pass.stdout).rowsAnonymized).toBeGreaterThanOrEqual(old.length);

    const byId = new Map((await rowsOf()).map((r) => [r.id as string, r]));
    for (const e of old) {
      const row = byId.get(e.id) as Record<string, unknown>;
      expect(row.anonymized).toBe(true);
      expect(row.user_id).toBe(e.userId === undefined ? null : hmac(e.userId));
      expect(row.anonymous_id).toBe(e.anonymousId === undefined ? null : hmac(e.anonymousId));
      if (e.metadata) {
        const { email: _e, ip: _i, ...rest } = e.metadata;
        expect(row.metadata).toEqual(rest);
      } else expect(row.metadata).toBeNull();
      expect(row.message).toBe(e.message ?? null);
    }
    for (const e of recent) {
      const row = byId.get(e.id) as Record<string, unknown>;
      expect(row).toMatchObject({
        anonymized: false,
        user_id: e.userId ?? null,
        anonymous_id: e.anonymousId ?? null,
        metadata: e.metadata ?? null,
      });
    }

    // A second pass changes nothing (no HMAC of an HMAC).
    const snapshot = await rowsOf();
    const again = await runTributary(['retention'], anonEnv());
    expect(lastLine(again.stdout)).toMatchObject({ status: 'completed', rowsAnonymized: 0 });
    expect(await rowsOf()).toEqual(snapshot);
  });

  it('finds a subject’s pseudonymised events through the same HMAC, in PostgreSQL and in the archive', async () => {
    const subject = 'user-3';
    const theirs = sent.filter((e) => e.userId === subject);
    const old = theirs.filter((e) => e.ageDays > 31);
    expect(old.length).toBeGreaterThan(3);

    const byRaw = await call(stack.url, `/v1/events?userId=${subject}&limit=1000`);
    expect(byRaw.status).toBe(200);
    const rawIds = new Set((byRaw.body.events as { id: string }[]).map((e) => e.id));
    for (const e of old) expect(rawIds.has(e.id)).toBe(false);
    const byHmac = await call(stack.url, `/v1/events?userId=${hmac(subject)}&limit=1000`);
    expect((byHmac.body.events as { id: string }[]).map((e) => e.id).sort()).toEqual(
      old.map((e) => e.id).sort(),
    );

    // Archived after anonymisation: the archive holds the pseudonym, never the raw id.
    const pass = await runTributary(['retention'], anonEnv(PASS_RETENTION));
    expect(pass.code, pass.stderr).toBe(0);
    const archive = await readArchive({
      ARCHIVE_DIR: archiveDir,
      ARCHIVE_S3_REGION: 'us-east-1',
      ARCHIVE_S3_FORCE_PATH_STYLE: true,
      ARCHIVE_S3_CHECKSUMS: 'when_supported',
    });
    expect(archive.rows.length).toBeGreaterThan(0);
    expect(archive.rows.filter((r) => r.user_id === subject)).toEqual([]);
    const archivedOld = old.filter((e) => e.ageDays > (e.service === 'audit' ? 150 : 60));
    expect(archive.rows.filter((r) => r.user_id === hmac(subject)).length).toBe(archivedOld.length);
    expect(archive.rows.every((r) => r.anonymized)).toBe(true);
    expect(archiveEnv).toBeTypeOf('function');
  });
});
