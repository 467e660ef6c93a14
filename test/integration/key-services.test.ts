import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliResult, runTributary } from '../helpers/processes.ts';
import { call, event, type Stack, startStack } from '../helpers/stack.ts';
import { waitUntilStored } from '../helpers/stored-once.ts';

/** Keys bound to services (ARCHITECTURE §11): who may write what, and what the rows record. */
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workers: 1 });
});
afterAll(async () => {
  await stack?.close();
});

async function keyFor(services: string[], scopes = ['ingest']): Promise<{ id: string; key: string }> {
  const res = await call(stack.url, '/v1/admin/keys', {
    body: { name: `for ${services}`, scopes, services },
  });
  expect(res.status).toBe(201);
  return { id: res.body.id, key: res.body.key };
}

async function rowsOf(id: string): Promise<{ service: string; type: string; key_id: string | null }[]> {
  const { rows } = await stack.env.pool.query(
    'SELECT service, type, key_id FROM events WHERE id = $1 ORDER BY service',
    [id],
  );
  return rows;
}

describe('keys bound to services', () => {
  it('an id sent first by another service does not make this service’s event a duplicate', async () => {
    const evil = await keyFor(['evil']);
    const shop = await keyFor(['shop']);
    // A predictable id (say, derived from an order number), sent first by another service,
    // for the same subject: so both land in the same buffer partition (and dedupe set).
    const id = crypto.randomUUID();
    const squat = await call(stack.url, '/v1/events', {
      key: evil.key,
      body: event({ id, service: 'evil', type: 'squat', userId: 'customer-42' }),
    });
    expect(squat.body).toEqual({ id, status: 'accepted' });
    const real = await call(stack.url, '/v1/events', {
      key: shop.key,
      body: event({ id, service: 'shop', type: 'order.placed', userId: 'customer-42' }),
    });
    expect(real.body).toEqual({ id, status: 'accepted' });
    // Within a service, a retry is still a duplicate, and stored once.
    const retry = await call(stack.url, '/v1/events/batch', {
      key: shop.key,
      body: { events: [event({ id, service: 'shop', type: 'order.placed', userId: 'customer-42' })] },
    });
    expect(retry.body).toMatchObject({ accepted: 0, duplicates: 1, ids: [id] });
    await waitUntilStored(stack.env.pool, [id]);
    await expect.poll(() => rowsOf(id), { timeout: 20_000 }).toHaveLength(2);
    expect(await rowsOf(id)).toEqual([
      { service: 'evil', type: 'squat', key_id: evil.id },
      { service: 'shop', type: 'order.placed', key_id: shop.id },
    ]);
  });

  it('records the key that wrote each row, single and batch, and shows it on read', async () => {
    const writer = await keyFor(['kid']);
    const single = event({ service: 'kid' });
    const batch = [event({ service: 'kid' }), event({ service: 'kid' })];
    expect((await call(stack.url, '/v1/events', { key: writer.key, body: single })).status).toBe(202);
    const res = await call(stack.url, '/v1/events/batch', { key: writer.key, body: { events: batch } });
    expect(res.body.accepted).toBe(2);
    const ids = [single, ...batch].map((e) => String(e.id));
    await waitUntilStored(stack.env.pool, ids);
    for (const id of ids)
      expect(await rowsOf(id)).toEqual([{ service: 'kid', type: 'order.placed', key_id: writer.id }]);
    const read = await call(stack.url, '/v1/events?service=kid');
    expect(read.body.events.map((e: { keyId: string }) => e.keyId)).toEqual([
      writer.id,
      writer.id,
      writer.id,
    ]);
  });

  it('PATCH binds an existing key at once, and rotation keeps its services', async () => {
    const old = await keyFor([]);
    expect(
      (await call(stack.url, '/v1/events', { key: old.key, body: event({ service: 'anything' }) })).status,
    ).toBe(202);
    const patched = await call(stack.url, `/v1/admin/keys/${old.id}`, {
      method: 'PATCH',
      body: { services: ['web-shop', 'web-shop'] },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ id: old.id, services: ['web-shop'] });
    const refused = await call(stack.url, '/v1/events', {
      key: old.key,
      body: event({ service: 'anything' }),
    });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('service_not_allowed');
    expect(
      (await call(stack.url, '/v1/events', { key: old.key, body: event({ service: 'web-shop' }) })).status,
    ).toBe(202);

    const rotated = await call(stack.url, `/v1/admin/keys/${old.id}/rotate`, { method: 'POST' });
    expect(rotated.body.services).toEqual(['web-shop']);
    const listed = await call(stack.url, '/v1/admin/keys');
    expect(listed.body.keys.find((k: { id: string }) => k.id === rotated.body.id).services).toEqual([
      'web-shop',
    ]);

    // Bad changes are refused with a code, and change nothing.
    for (const body of [{}, { services: ['no spaces'] }, { scopes: ['admin'] }]) {
      const bad = await call(stack.url, `/v1/admin/keys/${old.id}`, { method: 'PATCH', body });
      expect(bad.status, JSON.stringify(body)).toBe(400);
      expect(bad.body.error.code).toBe('invalid_request');
    }
    const audit = await call(stack.url, '/v1/admin/audit?action=keys.update');
    expect(audit.body.entries.map((e: { target: string }) => e.target)).toContain(old.id);
  });

  it('pages through rows that share an id and a time in two services, in reads and exports', async () => {
    // Allowed now that ids are unique per service only; a cursor on (occurred_at, id) alone
    // would skip the second row at a page boundary.
    const id = crypto.randomUUID();
    const timestamp = new Date(Date.now() - 600_000).toISOString();
    const userId = `tie-${id}`;
    for (const service of ['tie-a', 'tie-b']) {
      const res = await call(stack.url, '/v1/events', { body: event({ id, service, timestamp, userId }) });
      expect(res.body).toEqual({ id, status: 'accepted' });
    }
    await expect.poll(() => rowsOf(id), { timeout: 20_000 }).toHaveLength(2);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const after: string = cursor ? `&cursor=${cursor}` : '';
      const page = await call(stack.url, `/v1/events?userId=${userId}&limit=1${after}`);
      expect(page.status).toBe(200);
      seen.push(...page.body.events.map((e: { service: string }) => e.service));
      cursor = page.body.nextCursor;
    } while (cursor && seen.length < 5);
    expect(seen).toEqual(['tie-b', 'tie-a']);

    // The export reads a subject's rows 1,000 at a time: put the tie across that boundary.
    await stack.env.pool.query(
      `INSERT INTO events (id, occurred_at, received_at, service, type, user_id)
       SELECT gen_random_uuid(), $2::timestamptz - g * interval '1 second', now(), 'tie-a', 'older', $1
         FROM generate_series(1, 999) AS g`,
      [userId, timestamp],
    );
    const exported = await call(stack.url, `/v1/users/${userId}/events/export`);
    expect(exported.status).toBe(200);
    const lines = String(exported.body)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; service: string });
    expect(lines).toHaveLength(1_001);
    expect(lines.filter((l) => l.id === id).map((l) => l.service)).toEqual(['tie-a', 'tie-b']);
  });

  it('the CLI creates a key bound to services', async () => {
    const out = await runTributary(
      ['keys', 'create', '--name', 'cli', '--scopes', 'ingest', '--services', 'cli-a,cli-b'],
      stack.env.env(),
    );
    expect(out.code, out.stderr).toBe(0);
    const created = cliResult(out.stdout);
    expect(created.services).toEqual(['cli-a', 'cli-b']);
    const key = String(created.key);
    expect((await call(stack.url, '/v1/events', { key, body: event({ service: 'cli-b' }) })).status).toBe(
      202,
    );
    expect((await call(stack.url, '/v1/events', { key, body: event({ service: 'cli-c' }) })).status).toBe(
      403,
    );
    const bad = await runTributary(
      ['keys', 'create', '--name', 'x', '--scopes', 'ingest', '--services', 'a b'],
      stack.env.env(),
    );
    expect(bad.code).toBe(2);
  });
});
