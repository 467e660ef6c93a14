import { randomUUID } from 'node:crypto';
import { describe, expect } from 'vitest';
import { signatureOf } from '../../src/sources/webhook.ts';
import { ADMIN_KEY } from '../helpers/env.ts';
import { privateDatabaseTest } from '../helpers/fixtures.ts';
import { startSourceApi } from '../helpers/source-api.ts';
import { SOURCE_KEYS } from '../helpers/sources.ts';
import { call } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * Sources while Tributary's own PostgreSQL is down (ARCHITECTURE §15 with §1's promise that
 * ingest goes on): webhook deliveries to a source the API process has seen are taken from
 * its cache and buffered; an HTTP API source waits (no lease can be taken) and reads what
 * came in meanwhile once the database is back. Every delivery acknowledged and every record
 * is stored exactly once.
 */
const test = privateDatabaseTest({ ...SOURCE_KEYS, SOURCE_POLL_MS: '100', CLAIM_IDLE_MS: '1000' });

const SECRET = 'outage-webhook-secret-0123';

describe('sources through an outage of Tributary’s database', () => {
  test('webhooks go on from the cache, an API source catches up after it: each record stored once', async ({
    testEnv: t,
  }) => {
    const api = await startSourceApi(100);
    try {
      const serve = await t.start('serve');
      await t.start('work');
      const hook = await call(serve.url, '/v1/admin/sources', {
        key: ADMIN_KEY,
        body: {
          kind: 'webhook',
          name: 'hook',
          service: 'hooks',
          secret: SECRET,
          signatureHeader: 'X-Sig',
          idField: 'id',
          type: 'hook.fired',
        },
      });
      const pull = await call(serve.url, '/v1/admin/sources', {
        key: ADMIN_KEY,
        body: {
          kind: 'http',
          name: 'pull',
          service: 'pulled',
          url: `${api.url}/open/offset`,
          dataPath: 'data.items',
          pagination: { type: 'offset', limit: 20 },
          idField: 'id',
          typeField: 'kind',
          timestampField: 'created_at',
          intervalSeconds: 1,
        },
      });
      expect([hook.status, pull.status]).toEqual([201, 201]);
      const deliver = (sourceId: string, id: string) => {
        const raw = JSON.stringify({ id, at: new Date().toISOString() });
        return call(serve.url, `/v1/webhooks/${sourceId}`, {
          method: 'POST',
          raw,
          key: null,
          headers: { 'X-Sig': signatureOf(SECRET, raw) },
        });
      };
      const acknowledged = new Set<string>();
      const send = async (id: string) => {
        const res = await deliver(hook.body.id, id);
        if (res.status === 202) acknowledged.add(res.body.id);
        return res.status;
      };
      expect(await send('before')).toBe(202);
      const count = async (keyId: string) =>
        Number(
          (await t.pool.query(`SELECT count(*) AS n FROM events WHERE key_id = $1`, [keyId])).rows[0]?.n,
        );
      await waitFor(async () => (await count(`source:${pull.body.id}`)) === 100, 30_000, 'the API read once');

      t.postgres.stop();
      try {
        const statuses: number[] = [];
        for (let i = 0; i < 50; i++) statuses.push(await send(`during-${i}`));
        expect(statuses.every((s) => s === 202)).toBe(true);
        // A source this process has never seen cannot be looked up.
        const unknown = await deliver(randomUUID(), 'x');
        expect(unknown.status).toBe(503);
        expect(unknown.body.error.code).toBe('database_unavailable');
        api.add(40);
      } finally {
        t.postgres.start();
      }
      await waitFor(
        async () => (await count(`source:${pull.body.id}`).catch(() => 0)) === 140,
        60_000,
        'the API caught up',
        250,
      );
      await waitFor(
        async () => (await count(`source:${hook.body.id}`).catch(() => 0)) === 51,
        60_000,
        'every delivery',
        250,
      );
      const { rows } = await t.pool.query<{ id: string }>(`SELECT id FROM events WHERE key_id = $1`, [
        `source:${hook.body.id}`,
      ]);
      expect(new Set(rows.map((r) => r.id))).toEqual(acknowledged);
      const distinct = await t.pool.query(
        `SELECT count(DISTINCT id)::int AS n FROM events WHERE key_id = $1`,
        [`source:${pull.body.id}`],
      );
      expect(distinct.rows[0]?.n).toBe(140);
    } finally {
      await api.close();
    }
  });
});
