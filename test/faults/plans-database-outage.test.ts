import { randomUUID } from 'node:crypto';
import { describe, expect } from 'vitest';
import { privateDatabaseTest } from '../helpers/fixtures.ts';
import { ORDER_SCHEMA } from '../helpers/plans.ts';
import { call, event } from '../helpers/stack.ts';
import { expectStoredExactlyOnce } from '../helpers/stored-once.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * Tracking plans (ARCHITECTURE §14) while PostgreSQL is down: a process that has its plans
 * keeps enforcing them (ingest never needs the database), one that starts during the
 * outage accepts events unchecked and applies the plans within seconds of the database's
 * return, without waiting for PLANS_RELOAD_S. Every event acknowledged is stored once.
 */
const test = privateDatabaseTest({ PLANS_RELOAD_S: '3600' });

describe('tracking plans through a PostgreSQL outage', () => {
  test('kept by a running process, loaded by a new one as soon as the database is back', async ({
    testEnv: t,
  }) => {
    const first = await t.start('serve');
    await t.start('work');
    const service = `tp-outage-${randomUUID().slice(0, 6)}`;
    const put = await call(first.url, `/v1/schemas/${service}/order.placed`, {
      method: 'PUT',
      body: { schema: ORDER_SCHEMA },
    });
    expect(put.status).toBe(200);
    await call(first.url, `/v1/schemas/${service}`, { method: 'PUT', body: { mode: 'reject' } });
    const bad = () => event({ service, type: 'order.placed', metadata: { total: -1 } });
    const good = () => event({ service, type: 'order.placed', metadata: { orderId: 'o', total: 1 } });
    const acknowledged = new Set<string>();
    const send = async (url: string, body: Record<string, unknown>) => {
      const res = await call(url, '/v1/events', { body });
      if (res.status === 202) acknowledged.add(String(body.id));
      return res.status;
    };

    t.postgres.stop();
    let stopped = true;
    try {
      // The running process still has its plan, and still accepts.
      expect(await send(first.url, bad())).toBe(400);
      expect(await send(first.url, good())).toBe(202);
      // A process started now cannot load the plans: it accepts what it cannot check.
      const second = await t.start('serve');
      expect(await send(second.url, bad())).toBe(202);
      await expect(
        second.waitForLog((l) => l.msg === 'tracking plans not reloaded; keeping the last ones', 5_000),
      ).resolves.toBeDefined();
      t.postgres.start();
      stopped = false;
      const back = Date.now();
      await waitFor(
        async () => (await send(second.url, bad())) === 400,
        15_000,
        'the second process to apply the plan',
      );
      const ms = Date.now() - back;
      console.info(`[plans-outage] the plan applied on the new process ${ms} ms after PostgreSQL started`);
      expect(await send(second.url, good())).toBe(202);
    } finally {
      if (stopped) t.postgres.start();
    }
    await expectStoredExactlyOnce(t.pool, acknowledged);
  });
});
