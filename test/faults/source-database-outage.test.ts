import pg from 'pg';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { stackTest } from '../helpers/fixtures.ts';
import { freePort, PrivatePostgres } from '../helpers/private-servers.ts';
import type { TributaryProcess } from '../helpers/processes.ts';
import { createSourceCall, SOURCE_KEYS, sourceState, storedOf } from '../helpers/sources.ts';
import type { Stack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * The source's own database goes away mid-run (ARCHITECTURE §15): the run fails with
 * `source_unreachable`, the error shows in the source's state and metrics, runs are retried
 * with backoff, and once the database is back the source resumes from its committed
 * position: every row stored exactly once.
 */
const test = stackTest({
  workers: 1,
  env: { ...SOURCE_KEYS, SOURCE_POLL_MS: '100' },
  workerEnv: { METRICS_PORT: '0' },
});

let source: PrivatePostgres;
let pool: pg.Pool;
const ROWS = 20_000;

beforeAll(async () => {
  source = new PrivatePostgres(await freePort());
  source.start();
  pool = new pg.Pool({ connectionString: source.url, max: 2 });
  pool.on('error', () => {});
  await pool.query(
    `CREATE TABLE events_out (id int PRIMARY KEY, at timestamptz(6) NOT NULL, what text NOT NULL)`,
  );
  await pool.query(
    `INSERT INTO events_out SELECT g, now() - interval '1 hour' + g * interval '1 millisecond', 'thing.' || (g % 5)
       FROM generate_series(1, $1) g`,
    [ROWS],
  );
});
afterAll(async () => {
  await pool?.end().catch(() => {});
  source?.destroy();
});

type State = {
  rowsRead: number;
  lastError: string | null;
  lastErrorAt: string | null;
  lastSuccessAt: string | null;
  failures: number;
};
const stateOf = async (stack: Stack, id: string) => (await sourceState(stack, id)).state as State;

describe('the source database goes down mid-run', () => {
  test(`${ROWS} rows: the outage shows as the last error, the source resumes after it, every row once`, async ({
    stack,
  }) => {
    const started = await (stack.workers[0] as TributaryProcess).waitForLog(
      (l) => l.msg === 'worker started',
    );
    const workerPort = Number(started.metricsPort);
    const url = new URL(source.url);
    url.password = 'outage-secret-pw';
    const res = await createSourceCall(stack, {
      kind: 'postgres',
      name: 'outage',
      service: 'outage',
      connection: url.toString(),
      table: 'events_out',
      cursorColumn: 'at',
      idColumn: 'id',
      typeColumn: 'what',
      intervalSeconds: 1,
      maxBatchRows: 500,
    });
    expect(res.status).toBe(201);
    const id = res.body.id as string;
    await waitFor(async () => (await stateOf(stack, id)).rowsRead >= 2_000, 30_000, 'reading under way', 20);
    source.stop();
    const failing = await waitFor(
      async () => {
        const s = await stateOf(stack, id);
        return s.failures >= 2 ? s : undefined;
      },
      30_000,
      'failed runs',
      250,
    );
    expect(failing.lastError).toMatch(/^source_unreachable: /);
    expect(failing.lastError).not.toContain('outage-secret-pw');
    const readWhileDown = failing.rowsRead;
    expect(readWhileDown).toBeLessThan(ROWS);
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    expect(metrics).not.toContain('outage-secret-pw');
    // The worker's own metrics say why: failed runs by the code of their error.
    const workerMetrics = await waitFor(async () => {
      const text = await (await fetch(`http://127.0.0.1:${workerPort}/metrics`)).text();
      return /tributary_source_errors_total\{source="outage",kind="postgres",code="source_unreachable"\} [1-9]/.test(
        text,
      )
        ? text
        : undefined;
    });
    expect(workerMetrics).toMatch(
      /tributary_source_consecutive_failures\{source="outage",kind="postgres"\} [1-9]/,
    );
    expect(workerMetrics).not.toContain('outage-secret-pw');

    source.start();
    await waitFor(
      async () => (await storedOf(stack, id)).rows >= ROWS,
      60_000,
      'every row after the outage',
      250,
    );
    expect(await storedOf(stack, id)).toEqual({ rows: ROWS, ids: ROWS });
    const after = await stateOf(stack, id);
    expect(after.failures).toBe(0);
    expect(after.rowsRead).toBe(ROWS);
    expect(Date.parse(after.lastSuccessAt as string)).toBeGreaterThan(
      Date.parse(after.lastErrorAt as string),
    );
    const lines = stack.workers.flatMap((w) => w.logs).map((l) => JSON.stringify(l));
    const warned = lines.filter((l) => l.includes('source run failed'));
    expect(warned.length).toBeGreaterThanOrEqual(2);
    expect(lines.filter((l) => l.includes('outage-secret-pw'))).toEqual([]);
    console.info(
      `[source-outage] ${ROWS} rows, ${readWhileDown} read before the outage, ${failing.failures}+ failed runs, ` +
        `stored ${ROWS} once after it; last error: ${failing.lastError}`,
    );
  });
});
