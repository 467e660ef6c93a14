import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../src/store/api-keys.repo.ts';
import { ADMIN_KEY } from '../helpers/env.ts';
import { call, event, type Stack, startStack, waitFor } from '../helpers/stack.ts';

// Two API processes (API_PROCESSES=2): a revocation handled by one must reach the other.
let stack: Stack;
const created: string[] = [];
beforeAll(async () => {
  stack = await startStack({ env: { API_PROCESSES: '2', KEY_ROTATION_OVERLAP_S: '3600' } });
  await waitFor(
    async () => stack.api.logs.filter((l) => l.msg === 'listening').length === 2,
    20_000,
    'both API processes listening',
  );
});
afterAll(async () => {
  await stack?.close();
});

async function createKey(name: string): Promise<{ id: string; key: string }> {
  const res = await call(stack.url, '/v1/admin/keys', {
    body: { name, scopes: ['ingest', 'read'], rateLimitPerMinute: 100_000 },
  });
  expect(res.status).toBe(201);
  created.push(res.body.key);
  return res.body;
}

/** Longest wait for one answer: a request that gets none fails with its id, not the test's timeout. */
const ANSWER_MS = 15_000;

/**
 * One ingest on a connection of its own, so the cluster primary hands it to the next process.
 * Rejects when the answer does not come whole within ANSWER_MS (reset, aborted, or none).
 */
function ingestOnce(key: string): Promise<{ status: number; requestId: string }> {
  const requestId = randomUUID();
  return new Promise((resolve, reject) => {
    const fail = (why: string) => reject(new Error(`ingest ${requestId}: ${why}`));
    const req = request(
      `${stack.url}/v1/events`,
      {
        method: 'POST',
        agent: false,
        timeout: ANSWER_MS,
        headers: { 'content-type': 'application/json', 'x-api-key': key, 'x-request-id': requestId },
      },
      (res) => {
        res.resume();
        res.on('error', (err) => fail(`answer cut off (${err.message})`));
        res.on('aborted', () => fail('answer aborted'));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, requestId }));
      },
    );
    req.on('timeout', () => {
      req.destroy();
      fail(`no answer within ${ANSWER_MS} ms`);
    });
    req.on('error', (err) => fail(err.message));
    req.end(JSON.stringify(event()));
  });
}

/**
 * {@link ingestOnce}, asked again once when no whole answer came: the lost answer is logged
 * (its request id), and is neither a refusal nor an acceptance.
 */
async function ingest(key: string): Promise<{ status: number; requestId: string }> {
  try {
    return await ingestOnce(key);
  } catch (err) {
    console.warn('[key-rotation] no whole answer, asking again:', (err as Error).message);
    return ingestOnce(key);
  }
}

/** The processes (pids) that answered these requests, from their access log lines. */
async function pidsOf(requestIds: string[]): Promise<Set<unknown>> {
  const wanted = new Set(requestIds);
  const lines = () => stack.api.logs.filter((l) => l.msg === 'request' && wanted.has(String(l.requestId)));
  await waitFor(async () => lines().length === wanted.size, 5_000, 'access log lines');
  return new Set(lines().map((l) => l.pid));
}

/** Both processes have answered `key` just now (so both hold it in their 5 s cache). */
async function warmBoth(key: string): Promise<void> {
  const answers = await Promise.all(Array.from({ length: 12 }, () => ingest(key)));
  expect(answers.map((a) => a.status)).toEqual(answers.map(() => 202));
  expect((await pidsOf(answers.map((a) => a.requestId))).size).toBe(2);
}

/**
 * Milliseconds from now until `key` was refused for good (with `status`): the time of the first
 * of ten refusals in a row, answered by both processes. Undefined when that has not happened within `ms`.
 */
async function msUntilRefusedEverywhere(key: string, ms: number, status = 401): Promise<number | undefined> {
  const start = performance.now();
  let streak: { requestId: string; at: number }[] = [];
  while (performance.now() - start < ms) {
    const at = performance.now() - start;
    const answer = await ingest(key);
    if (answer.status === 202) streak = [];
    else {
      expect(answer.status).toBe(status);
      streak.push({ requestId: answer.requestId, at });
    }
    if (streak.length >= 10) {
      expect((await pidsOf(streak.map((a) => a.requestId))).size).toBe(2);
      return Math.round(streak[0]?.at ?? 0);
    }
  }
  return undefined;
}

describe('key rotation and revocation', () => {
  it('revokes a key on every API process within a second (pub/sub, not the 5 s cache)', async () => {
    const { id, key } = await createKey('to-revoke');
    await warmBoth(key);
    const revoked = await call(stack.url, `/v1/admin/keys/${id}`, { method: 'DELETE' });
    expect(revoked.status).toBe(204);
    // Long enough to see the 5 s cache expire, should pub/sub not work.
    const ms = await msUntilRefusedEverywhere(key, 7_000);
    console.log('revocation in effect on both API processes after', ms, 'ms');
    expect(ms).toBeDefined();
    expect(ms).toBeLessThan(2_000);
  });

  it('binds a key to services on every API process within a second (PATCH, pub/sub)', async () => {
    const { id, key } = await createKey('to-bind');
    await warmBoth(key);
    // The events sent are of service `checkout`: bound elsewhere, the key may no longer send them.
    const bound = await call(stack.url, `/v1/admin/keys/${id}`, {
      method: 'PATCH',
      body: { services: ['elsewhere'] },
    });
    expect(bound.status).toBe(200);
    const ms = await msUntilRefusedEverywhere(key, 7_000, 403);
    console.log('PATCH in effect on both API processes after', ms, 'ms');
    expect(ms).toBeDefined();
    expect(ms).toBeLessThan(2_000);
  });

  it('rotates a key: the new one works at once, the old one until the overlap ends, then 401', async () => {
    const old = await createKey('checkout');
    await warmBoth(old.key);
    const rotated = await call(stack.url, `/v1/admin/keys/${old.id}/rotate`, { body: { overlapSeconds: 2 } });
    expect(rotated.status).toBe(201);
    expect(rotated.body).toMatchObject({
      name: 'checkout (rotated)',
      scopes: ['ingest', 'read'],
      rateLimitPerMinute: 100_000,
      rotatedFrom: { id: old.id },
    });
    created.push(rotated.body.key);
    expect(rotated.body.key).toMatch(/^trb_/);
    expect(rotated.body.key).not.toBe(old.key);
    const expiresAt = Date.parse(rotated.body.rotatedFrom.expiresAt);
    expect(Math.abs(expiresAt - (Date.now() + 2_000))).toBeLessThan(1_000);

    await warmBoth(rotated.body.key);
    await warmBoth(old.key);
    // After the overlap: refused everywhere (each process knows the expiry, whatever it cached).
    // Asked from now on, until 2 s after the expiry.
    const ms = await msUntilRefusedEverywhere(old.key, Math.max(0, expiresAt - Date.now()) + 2_000);
    expect(ms).toBeDefined();
    expect((await ingest(rotated.body.key)).status).toBe(202);

    const listed = await call(stack.url, '/v1/admin/keys');
    const oldListed = listed.body.keys.find((k: { id: string }) => k.id === old.id);
    expect(oldListed.expiresAt).toBe(rotated.body.rotatedFrom.expiresAt);
    expect(oldListed.revokedAt).toBeNull();
    // Rotating an expired key is refused like an unknown one.
    expect((await call(stack.url, `/v1/admin/keys/${old.id}/rotate`, { body: {} })).status).toBe(404);
  });

  it('rotates with the configured overlap by default, and refuses bad requests', async () => {
    const old = await createKey('default-overlap');
    const rotated = await call(stack.url, `/v1/admin/keys/${old.id}/rotate`, { method: 'POST' });
    expect(rotated.status).toBe(201);
    created.push(rotated.body.key);
    const expiresAt = Date.parse(rotated.body.rotatedFrom.expiresAt);
    expect(Math.abs(expiresAt - (Date.now() + 3_600_000))).toBeLessThan(5_000);
    expect((await ingest(old.key)).status).toBe(202);

    for (const body of [{ overlapSeconds: -1 }, { overlapSeconds: 1.5 }, { overlap: 5 }]) {
      const res = await call(stack.url, `/v1/admin/keys/${old.id}/rotate`, { body });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    expect((await call(stack.url, `/v1/admin/keys/${randomUUID()}/rotate`, { body: {} })).status).toBe(404);
    expect((await call(stack.url, '/v1/admin/keys/not-a-uuid/rotate', { body: {} })).status).toBe(404);
    // Revoking the rotated-away key ends its overlap at once.
    expect((await call(stack.url, `/v1/admin/keys/${old.id}`, { method: 'DELETE' })).status).toBe(204);
    expect(await msUntilRefusedEverywhere(old.key, 2_000)).toBeDefined();
  });

  it('never logs key material', () => {
    const logs = JSON.stringify(stack.api.logs);
    for (const key of [ADMIN_KEY, ...created]) {
      expect(logs).not.toContain(key.slice(8));
      expect(logs).not.toContain(hashKey(key));
    }
  });
});
