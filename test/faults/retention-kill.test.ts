import { describe, expect } from 'vitest';
import { agedEvents, ingestAll, isExpired, PASS_RETENTION, type SentEvent } from '../helpers/aged-events.ts';
import { readArchive } from '../helpers/archive-reader.ts';
import { archiveStackTest } from '../helpers/fixtures.ts';
import { runTributary, startTributary } from '../helpers/processes.ts';
import type { Stack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * Steps of a pass at which it is killed -9, in the order a pass reaches them; `unit` picks
 * the step of an archive of partly expired rows (source `events`) over one of a detached
 * partition. Each kill lands just after the step's log line, i.e. somewhere in the next.
 */
const KILL_AFTER: { step: string; unit?: boolean }[] = [
  { step: 'rows.anonymized' },
  { step: 'partition.detached' },
  { step: 'archive.written', unit: false },
  { step: 'archive.uploaded', unit: false },
  { step: 'archive.verified', unit: false },
  { step: 'partition.dropped' },
  { step: 'archive.written', unit: true },
  { step: 'archive.uploaded', unit: true },
  { step: 'archive.verified', unit: true },
  { step: 'rows.deleted' },
  { step: 'archive.complete' },
];
const label = (k: { step: string; unit?: boolean }) =>
  k.unit === undefined ? k.step : `${k.step} (${k.unit ? 'unit' : 'partition'})`;

const test = archiveStackTest({ workers: 1 });

/** A pass's environment: short retention, small batches, a lease that expires 1 s after a kill. */
const passEnv = (stack: Stack) =>
  stack.env.env({
    ...PASS_RETENTION,
    RETENTION_BATCH_ROWS: '100',
    RETENTION_LOCK_TTL_MS: '1000',
    ANONYMIZE_AFTER_DAYS: '30',
    ANONYMIZE_SECRET: 'kill-test-secret-0123456789',
  });

/** Runs passes until one completes (a killed pass's lease expires after 1 s). */
async function passToCompletion(stack: Stack): Promise<void> {
  await waitFor(
    async () => {
      const pass = await runTributary(['retention'], passEnv(stack));
      if (pass.code !== 0) expect(pass.code, pass.stderr).toBe(3); // busy: the killed holder's lease has not expired yet
      return pass.code === 0;
    },
    60_000,
    'a retention pass completed',
    500,
  );
}

describe('retention pass killed -9 at every step', () => {
  const sent: SentEvent[] = [];
  const killedAt: string[] = [];

  test('loses nothing and duplicates nothing in the archive', async ({ stack, s3 }) => {
    let round = 0;
    for (const kill of KILL_AFTER) {
      // Fresh rows each round, so every step has work to interrupt.
      const batch = agedEvents(600, 100 + round++);
      sent.push(...batch);
      // Partitions of the accepted window come back (with any strays of events_default), so
      // every round has whole partitions to detach and drop as well as partly expired ones.
      const migrated = await runTributary(['migrate'], stack.env.env({ RETENTION_DAYS: '400' }));
      expect(migrated.code, migrated.stderr).toBe(0);
      await ingestAll(stack, batch);
      const pass = await startTributary('retention', passEnv(stack));
      const seen = await pass
        .waitForLog(
          (l) => l.step === kill.step && (kill.unit === undefined || (l.source === 'events') === kill.unit),
          60_000,
        )
        .then(() => true)
        .catch(() => false);
      await pass.kill9();
      if (seen) killedAt.push(label(kill));
      await passToCompletion(stack);
    }
    expect(killedAt).toEqual(KILL_AFTER.map(label));

    const expired = sent.filter(isExpired);
    const archive = await readArchive(s3.config);
    const counts = new Map<string, number>();
    for (const r of archive.rows) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
    const twice = [...counts].filter(([, n]) => n > 1);
    expect(twice).toEqual([]);
    const missing = expired.filter((e) => !counts.has(e.id));
    expect(missing.map((e) => e.id)).toEqual([]);
    expect(archive.rows.length).toBe(expired.length);
    // Anonymisation (30 days) runs before archiving: no archived row carries a raw user id.
    expect(archive.rows.filter((r) => !r.anonymized)).toEqual([]);
    expect(archive.rows.filter((r) => r.user_id?.startsWith('user-'))).toEqual([]);
    // Every object is finished: a manifest that matches it, nothing left half-written.
    for (const [key, file] of archive.files) {
      expect(archive.manifests.get(key), key).toMatchObject({ rows: file.rows, sha256: file.sha256 });
    }

    const { rows } = await stack.env.pool.query<{ id: string }>('SELECT id FROM events');
    const inDb = new Set(rows.map((r) => r.id));
    for (const e of expired) expect(inDb.has(e.id)).toBe(false);
    expect(inDb.size).toBe(sent.length - expired.length);

    const { rows: open } = await stack.env.pool.query(
      `SELECT id, status FROM archives WHERE status <> 'complete'`,
    );
    expect(open).toEqual([]);
    const { rows: runs } = await stack.env.pool.query<{ status: string; n: number }>(
      `SELECT status, count(*)::int AS n FROM retention_runs GROUP BY status`,
    );
    expect(Object.fromEntries(runs.map((r) => [r.status, r.n]))).toMatchObject({
      abandoned: KILL_AFTER.length,
      completed: KILL_AFTER.length,
    });
  });
});
