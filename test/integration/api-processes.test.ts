import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from '../helpers/env.ts';
import { postOnNewConnection } from '../helpers/fresh-connection.ts';
import { documentedFetch } from '../helpers/openapi.ts';
import { runTributary, startTributary, type TributaryProcess } from '../helpers/processes.ts';
import { event, waitFor } from '../helpers/stack.ts';

let env: TestEnv;
let serve: TributaryProcess;

beforeAll(async () => {
  env = createTestEnv();
  const migrated = await runTributary(['migrate'], env.env());
  expect(migrated.code).toBe(0);
  serve = await startTributary('serve', env.env({ API_PROCESSES: '2' }));
});
afterAll(async () => {
  await serve?.kill9();
  await env?.cleanup();
});

/** One request on a connection of its own, so the primary hands each to the next process. */
const post = (body: unknown) => postOnNewConnection(`${serve.url}/v1/events`, body);

const accepted = async (): Promise<number> => {
  const text = await (await documentedFetch(`${serve.url}/metrics`)).text();
  return Number(/^tributary_events_accepted_total (\d+)/m.exec(text)?.[1] ?? Number.NaN);
};

const servingPids = () =>
  new Set(serve.logs.filter((l) => l.msg === 'request' && l.route === '/v1/events').map((l) => l.pid));

describe('API_PROCESSES=2', () => {
  it('spreads connections over both processes and sums their metrics', async () => {
    await waitFor(
      async () => serve.logs.filter((l) => l.msg === 'listening').length === 2,
      20_000,
      'both listening',
    );
    const statuses = await Promise.all(Array.from({ length: 40 }, () => post(event())));
    expect(statuses.every((s) => s === 202)).toBe(true);
    await waitFor(async () => servingPids().size === 2, 5_000, 'requests logged by two processes');
    // Whichever process answers /metrics reports what both accepted.
    for (let i = 0; i < 4; i++) expect(await accepted()).toBe(40);
  });

  it('replaces a process that dies, and stops every process on SIGTERM', async () => {
    const [victim] = [...servingPids()] as number[];
    process.kill(victim as number, 'SIGKILL');
    await serve.waitForLog((l) => l.msg === 'API process died; starting another');
    await waitFor(
      async () => serve.logs.filter((l) => l.msg === 'listening').length === 3,
      20_000,
      'a replacement',
    );
    const statuses = await Promise.all(Array.from({ length: 10 }, () => post(event())));
    expect(statuses.every((s) => s === 202)).toBe(true);
    expect(await serve.stop()).toBe(0);
    expect(serve.logs.filter((l) => l.msg === 'stopped').length).toBe(2);
  });
});
