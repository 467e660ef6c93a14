import { describe, expect } from 'vitest';
import { stackTest } from '../helpers/fixtures.ts';
import { documentedFetch } from '../helpers/openapi.ts';
import { startTributary, type TributaryProcess } from '../helpers/processes.ts';
import { call, event, type Stack, waitFor } from '../helpers/stack.ts';
import { countRows } from '../helpers/stored-once.ts';

const test = stackTest({ workerEnv: { BATCH_SIZE: '500' } });

const count = async (stack: Stack) => (await countRows(stack.env.pool)).rows;

describe('SIGTERM', () => {
  test('a worker finishes and acknowledges the batch in hand, then exits 0', async ({ stack }) => {
    for (let i = 0; i < 50; i++) {
      await call(stack.url, '/v1/events/batch', {
        body: { events: Array.from({ length: 200 }, () => event()) },
      });
    }
    const worker = await stack.addWorker();
    await waitFor(async () => (await count(stack)) > 0, 20_000, 'progress');
    expect(await worker.stop()).toBe(0);
    expect(worker.logs.some((l) => l.msg === 'worker stopped')).toBe(true);
    // Nothing is left pending: every entry it read was stored and acknowledged before exit.
    const buffer = await call(stack.url, '/health/buffer');
    expect(buffer.body.pending).toBe(0);
    expect(buffer.body.length + (await count(stack))).toBe(10_000);
  });

  test('a serve-only process stops the subject registry and closes the archive store, listener first, and exits 0', async ({
    stack,
  }) => {
    const api = await startTributary('serve', stack.env.env({ LOG_LEVEL: 'debug' }));
    const asked = Date.now();
    expect(await api.stop()).toBe(0);
    expect(Date.now() - asked).toBeLessThan(5_000);
    const closed = closedServices(api);
    expect(closed[0]).toBe('http');
    expect(closed).toContain('subjects');
    expect(closed).toContain('retention');
    expect(closed.indexOf('retention')).toBeLessThan(closed.indexOf('subjects'));
    expect(new Set(closed).size).toBe(closed.length);
    expect(api.logs.some((l) => l.msg === 'stop failed')).toBe(false);
    expect(api.logs.at(-1)?.msg).toBe('stopped');
  });

  test('`all` closes every service once: listeners, then the worker and its checkpoint, then the rest', async ({
    stack,
  }) => {
    const all = await startTributary('all', stack.env.env({ LOG_LEVEL: 'debug' }));
    // Signalled as soon as it listens, before its worker has started: it finishes starting first.
    expect(await all.stop()).toBe(0);
    const closed = closedServices(all);
    expect(new Set(closed).size).toBe(closed.length);
    for (const service of [
      'http',
      'worker',
      'checkpoint',
      'maintenance',
      'monitor',
      'subjects',
      'retention',
    ]) {
      expect(closed).toContain(service);
    }
    expect(closed.indexOf('http')).toBeLessThan(closed.indexOf('worker'));
    expect(closed.indexOf('worker')).toBeLessThan(closed.indexOf('checkpoint'));
    expect(closed.indexOf('checkpoint')).toBeLessThan(closed.indexOf('subjects'));
    expect(all.logs.some((l) => l.msg === 'worker stopped')).toBe(true);
    expect(all.logs.some((l) => l.msg === 'stop failed')).toBe(false);
  });

  test('the API stops accepting and exits 0', async ({ stack }) => {
    expect((await call(stack.url, '/v1/events', { body: event() })).status).toBe(202);
    expect(await stack.api.stop()).toBe(0);
    await expect(documentedFetch(`${stack.url}/health/live`)).rejects.toThrow();
  });
});

/** The services a process logged as closed at shutdown, in the order it closed them. */
function closedServices(proc: TributaryProcess): string[] {
  return proc.logs.filter((l) => l.msg === 'closed').map((l) => String(l.service));
}
