import { describe, expect } from 'vitest';
import { signatureOf } from '../../src/sources/webhook.ts';
import { ADMIN_KEY } from '../helpers/env.ts';
import { stackTest } from '../helpers/fixtures.ts';
import { createSourceCall, SOURCE_KEYS, sourceState, storedOf } from '../helpers/sources.ts';
import { call, type Stack, startStack, waitFor } from '../helpers/stack.ts';

/**
 * Webhook sources (ARCHITECTURE §15) with real signed deliveries: the HMAC-SHA256 of the raw
 * body under the source's secret, bare hex or `sha256=`-prefixed; a missing or wrong one is
 * 401 and stores nothing; a delivery sent again is a duplicate of the same id; a source's
 * rate limit; a paused source; the secret in no answer or log line.
 */
const test = stackTest({ workers: 1, env: { ...SOURCE_KEYS } });

const SECRET = 'whsec-7f3a9c1e5b2d8f4a6c0e';
const HEADER = 'X-Hub-Signature-256';

const webhook = (overrides: Record<string, unknown> = {}) => ({
  kind: 'webhook',
  name: `github-${Math.random().toString(36).slice(2, 8)}`,
  service: 'github',
  secret: SECRET,
  signatureHeader: HEADER,
  idField: 'delivery.id',
  typeField: 'action',
  userIdField: 'sender.login',
  ...overrides,
});

const payload = (id: string, extra: Record<string, unknown> = {}) => ({
  delivery: { id },
  action: 'issue.opened',
  sender: { login: 'octocat' },
  issue: { number: 42, title: 'It broke' },
  ...extra,
});

/** POSTs `body` (text as it is, or JSON) to a webhook source, signed with `signature` unless null. */
function deliver(stack: Stack, id: string, body: unknown, signature?: string | null, secret = SECRET) {
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  const headers: Record<string, string> = {};
  if (signature !== null) headers[HEADER] = signature ?? signatureOf(secret, raw);
  return call(stack.url, `/v1/webhooks/${id}`, { method: 'POST', raw, key: null, headers });
}

async function created(stack: Stack, overrides: Record<string, unknown> = {}): Promise<string> {
  const res = await createSourceCall(stack, webhook(overrides));
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  expect(res.body.webhookPath).toBe(`/v1/webhooks/${res.body.id}`);
  expect(res.body.secrets).toEqual(['secret']);
  expect(JSON.stringify(res.body)).not.toContain(SECRET);
  return res.body.id as string;
}

describe('webhook source', () => {
  test('a signed delivery is one event with its id; sent again it is a duplicate of that id', async ({
    stack,
  }) => {
    const id = await created(stack);
    const first = await deliver(stack, id, payload('d-1'));
    expect(first.status).toBe(202);
    expect(first.body.status).toBe('accepted');
    // GitHub's `sha256=` form and bare hex both verify.
    const raw = JSON.stringify(payload('d-1'));
    const again = await deliver(stack, id, raw, signatureOf(SECRET, raw).slice('sha256='.length));
    expect(again.body).toEqual({ id: first.body.id, status: 'duplicate' });
    await waitFor(async () => (await storedOf(stack, id)).rows === 1);
    const { rows } = await stack.env.pool.query(
      `SELECT id, service, type, user_id, metadata FROM events WHERE key_id = $1`,
      [`source:${id}`],
    );
    expect(rows).toEqual([
      {
        id: first.body.id,
        service: 'github',
        type: 'issue.opened',
        user_id: 'octocat',
        metadata: payload('d-1'),
      },
    ]);
    // Deliveries count in the source's state (written about once a second by each API process).
    const counted = await waitFor(async () => {
      const s = (await sourceState(stack, id)).state as Record<string, unknown>;
      return s.rowsRead === 2 ? s : undefined;
    });
    expect(counted).toMatchObject({ eventsAccepted: 1, eventsDuplicate: 1, eventsRejected: 0 });
    expect(counted.lastRunAt).not.toBeNull();
    expect(JSON.stringify(await sourceState(stack, id))).not.toContain(SECRET);
  });

  test('a missing, wrong or stale signature is 401 and stores nothing', async ({ stack }) => {
    const id = await created(stack);
    const body = JSON.stringify(payload('d-bad'));
    const cases: (string | null)[] = [
      null,
      '',
      'sha256=',
      signatureOf('another-secret-0123456789', body),
      signatureOf(SECRET, `${body} `),
      `sha1=${'0'.repeat(40)}`,
      'sha256=zz',
    ];
    for (const signature of cases) {
      const res = await deliver(stack, id, body, signature);
      expect({ signature, status: res.status, code: res.body.error.code }).toEqual({
        signature,
        status: 401,
        code: 'invalid_signature',
      });
    }
    // A key is no substitute for the signature.
    const keyed = await call(stack.url, `/v1/webhooks/${id}`, { method: 'POST', raw: body, key: ADMIN_KEY });
    expect(keyed.status).toBe(401);
    const good = await deliver(stack, id, payload('d-good'));
    expect(good.status).toBe(202);
    await waitFor(async () => (await storedOf(stack, id)).rows === 1);
    expect((await storedOf(stack, id)).rows).toBe(1);
    const metrics = await call(stack.url, '/metrics', { key: ADMIN_KEY });
    expect(String(metrics.body)).toMatch(
      /tributary_webhook_deliveries_total\{source="[^"]+",outcome="bad_signature"\} (\d+)/,
    );
  });

  test('a payload without its id or with a bad one is 400 naming the field; unknown sources are 404', async ({
    stack,
  }) => {
    const id = await created(stack, { timestampField: 'sent_at' });
    const noId = await deliver(stack, id, { action: 'x' });
    expect(noId.status).toBe(400);
    expect(noId.body.error).toMatchObject({
      code: 'invalid_event',
      details: [{ path: 'delivery.id', code: 'missing_id' }],
    });
    const badTime = await deliver(stack, id, payload('d-t', { sent_at: 'yesterday' }));
    expect(badTime.body.error).toMatchObject({ code: 'invalid_event', details: [{ path: 'sent_at' }] });
    const notJson = await deliver(stack, id, '{"delivery":');
    expect(notJson.body.error.code).toBe('invalid_json');
    // Unix seconds, as Stripe sends them.
    const unix = await deliver(stack, id, payload('d-u', { sent_at: Math.floor(Date.now() / 1000) - 60 }));
    expect(unix.status).toBe(202);
    // The refusals count, and the last one is explained by its field, never its value.
    const state = await waitFor(async () => {
      const s = (await sourceState(stack, id)).state as Record<string, unknown>;
      return s.eventsRejected === 2 && s.eventsAccepted === 1 ? s : undefined;
    });
    expect(state.lastRejection).toMatchObject({ code: 'invalid_event', details: [{ path: 'sent_at' }] });
    expect(JSON.stringify(state)).not.toContain('yesterday');
    expect((await deliver(stack, '00000000-0000-4000-8000-000000000000', payload('x'))).status).toBe(404);
    expect((await deliver(stack, 'not-a-uuid', payload('x'))).status).toBe(404);
  });

  test('a source over its deliveries per minute gets 429 with Retry-After; paused, 503 and nothing stored', async ({
    stack,
  }) => {
    const id = await created(stack, { rateLimitPerMinute: 3 });
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof deliver>> | undefined;
    for (let i = 0; i < 5; i++) {
      const res = await deliver(stack, id, payload(`rl-${i}`));
      statuses.push(res.status);
      if (res.status === 429) limited = res;
    }
    expect(statuses).toEqual([202, 202, 202, 429, 429]);
    expect(limited?.body.error.code).toBe('rate_limited');
    expect(Number(limited?.headers.get('retry-after'))).toBeGreaterThan(0);

    const other = await created(stack);
    const paused = await call(stack.url, `/v1/admin/sources/${other}`, {
      method: 'PATCH',
      body: { paused: true },
      key: ADMIN_KEY,
    });
    expect(paused.body.paused).toBe(true);
    // Each API process sees a change within 5 s (its cache of the source).
    const refused = await waitFor(async () => {
      const res = await deliver(stack, other, payload('p-1'));
      return res.status === 503 ? res : undefined;
    }, 10_000);
    expect(refused.body.error.code).toBe('source_paused');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await storedOf(stack, other)).rows).toBe(0);

    // A new secret: deliveries signed with it are taken, the old one is refused.
    const NEW = 'whsec-new-0a1b2c3d4e5f6a7b';
    const changed = await call(stack.url, `/v1/admin/sources/${other}`, {
      method: 'PATCH',
      body: { paused: false, secret: NEW },
      key: ADMIN_KEY,
    });
    expect(changed.status).toBe(200);
    expect(JSON.stringify(changed.body)).not.toContain(NEW);
    const taken = await waitFor(async () => {
      const res = await deliver(stack, other, payload('n-1'), undefined, NEW);
      return res.status === 202 ? res : undefined;
    }, 10_000);
    expect(taken.body.status).toBe('accepted');
    expect((await deliver(stack, other, payload('n-2'))).status).toBe(401);
  });

  test('no log line of any process holds a webhook secret', async ({ stack }) => {
    const lines = [...stack.api.logs, ...stack.workers.flatMap((w) => w.logs)].map((l) => JSON.stringify(l));
    expect(lines.filter((l) => l.includes(SECRET) || l.includes('whsec-new'))).toEqual([]);
  });
});

describe('without METADATA_ENCRYPTION_KEYS', () => {
  test('a source with a secret is refused: 409 encryption_not_configured, nothing stored', async () => {
    const bare = await startStack({});
    try {
      const res = await createSourceCall(bare, webhook());
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('encryption_not_configured');
      expect(res.body.error.message).toContain('METADATA_ENCRYPTION_KEYS');
      const list = await call(bare.url, '/v1/admin/sources', { key: ADMIN_KEY });
      expect(list.body.sources).toEqual([]);
    } finally {
      await bare.close();
    }
  });
});
