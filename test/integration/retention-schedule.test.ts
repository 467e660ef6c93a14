import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agedEvents, ingestAll, isExpired, PASS_RETENTION } from '../helpers/aged-events.ts';
import { type Stack, startStack, waitFor } from '../helpers/stack.ts';

describe('scheduled retention in work processes', () => {
  let stack: Stack;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tributary-retention-schedule-'));
    // Ingest accepts a year back; the workers' passes apply 60 days (audit 150), every 2 s.
    stack = await startStack({ env: { RETENTION_DAYS: '400', RETENTION_SCHEDULE: 'off' } });
    await stack.addWorker();
    const sent = agedEvents(300, 42);
    await ingestAll(stack, sent);
    const expired = sent.filter(isExpired).length;
    const workerEnv = {
      ...PASS_RETENTION,
      RETENTION_SCHEDULE: '*/2 * * * * *',
      ARCHIVE_DIR: join(dir, 'archive'),
      ARCHIVE_WORK_DIR: join(dir, 'work'),
    };
    await stack.workers[0]?.kill9();
    stack.workers.length = 0;
    await stack.addWorker(workerEnv);
    await stack.addWorker(workerEnv);
    await waitFor(
      async () => {
        const { rows } = await stack.env.pool.query<{ n: number }>(
          `SELECT coalesce(sum(rows_archived), 0)::int AS n FROM retention_runs WHERE status = 'completed'`,
        );
        return rows[0]?.n === expired;
      },
      60_000,
      'the expired rows archived by scheduled passes',
    );
  }, 120_000);

  afterAll(async () => {
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs passes on the schedule, one at a time across both workers', async () => {
    await waitFor(
      async () => {
        const { rows } = await stack.env.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM retention_runs WHERE status = 'completed' AND trigger = 'schedule'`,
        );
        return (rows[0]?.n ?? 0) >= 4;
      },
      30_000,
      'four scheduled passes',
    );
    const { rows } = await stack.env.pool.query<{
      started: Date;
      finished: Date;
      holder: string;
      status: string;
    }>(
      `SELECT started_at AS started, finished_at AS finished, holder, status FROM retention_runs ORDER BY started_at`,
    );
    expect(rows.every((r) => r.status === 'completed' || r.status === 'running')).toBe(true);
    const done = rows.filter((r) => r.status === 'completed');
    for (let i = 1; i < done.length; i++) {
      expect(done[i]?.started.getTime()).toBeGreaterThanOrEqual(
        (done[i - 1] as { finished: Date }).finished.getTime(),
      );
    }
    // Both workers fire on every slot; the one that finds a pass running leaves it.
    const skipped = stack.workers
      .flatMap((w) => w.logs)
      .filter((l) => l.msg === 'retention pass already running elsewhere');
    const ran = new Set(done.map((r) => r.holder));
    expect(ran.size + (skipped.length > 0 ? 1 : 0)).toBeGreaterThanOrEqual(2);
  });
});
