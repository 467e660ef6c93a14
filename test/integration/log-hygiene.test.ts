import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY } from '../helpers/env.ts';
import { call, event, type Stack, startStack, waitFor } from '../helpers/stack.ts';

// ARCHITECTURE §11: error logs never carry SQL parameters; access logs never carry a raw
// subject id (the route pattern instead); no log carries an API key.

let stack: Stack;
const subject = (what: string) => `subject-${what}-${randomUUID()}`;
/** Every value no log line may hold. */
const secrets: string[] = [ADMIN_KEY];
let dsarKey: string;

beforeAll(async () => {
  stack = await startStack({ workers: 1, env: { STREAM_PARTITIONS: '1' } });
  const dsar = await call(stack.url, '/v1/admin/keys', {
    body: { name: 'logs-dsar', scopes: ['dsar', 'read'] },
  });
  dsarKey = dsar.body.key;
  secrets.push(dsarKey);
});
afterAll(() => stack?.close());

/** Everything the API and the worker logged, as one string. */
const allLogs = () => JSON.stringify([...stack.api.logs, ...stack.workers.flatMap((w) => w.logs)]);

describe('log lines', () => {
  it('name the route of a call about a subject, never the subject', async () => {
    const id = subject('calls');
    secrets.push(id);
    const ingest = await call(stack.url, '/v1/events', { body: event({ userId: id }) });
    expect(ingest.status).toBe(202);
    const bearer = { key: null, headers: { authorization: `Bearer ${dsarKey}` } };
    expect((await call(stack.url, `/v1/users/${id}/opt-out`, { method: 'PUT', key: dsarKey })).status).toBe(
      200,
    );
    expect((await call(stack.url, `/v1/users/${id}/opt-out`, { method: 'DELETE', ...bearer })).status).toBe(
      200,
    );
    expect((await call(stack.url, `/v1/users/${id}/events/export`, { key: dsarKey })).status).toBe(200);
    expect((await call(stack.url, `/v1/events?userId=${id}`, { key: dsarKey })).status).toBe(200);
    expect((await call(stack.url, `/v1/users/${id}/events`, { method: 'DELETE', key: dsarKey })).status).toBe(
      202,
    );
    const line = await stack.api.waitForLog(
      (l) => l.msg === 'request' && l.route === '/v1/users/:userId/opt-out',
    );
    expect(line).toMatchObject({ method: 'PUT', status: 200, requestId: expect.any(String) });
    expect(line).not.toHaveProperty('path');
  });

  it('of a failed statement in a route give its class and SQLSTATE, not the statement or its parameters', async () => {
    const id = subject('query');
    secrets.push(id);
    await stack.env.pool.query('ALTER TABLE events RENAME COLUMN message TO message_gone');
    try {
      const res = await call(stack.url, `/v1/events?userId=${id}`);
      expect([res.status, res.body.error.code]).toEqual([500, 'internal']);
    } finally {
      await stack.env.pool.query('ALTER TABLE events RENAME COLUMN message_gone TO message');
    }
    const logged = await stack.api.waitForLog((l) => l.msg === 'unhandled error');
    expect(logged.err).toMatchObject({
      type: 'DrizzleQueryError',
      cause: { type: 'DatabaseError', code: '42703' },
    });
  });

  it('of a failed audit write give the error class, not the row’s path or the statement', async () => {
    const id = subject('audit');
    secrets.push(id);
    await stack.env.pool.query('ALTER TABLE audit_log RENAME COLUMN target TO target_gone');
    try {
      const res = await call(stack.url, `/v1/users/${id}/opt-out`, { method: 'DELETE', key: dsarKey });
      expect(res.status).toBe(200);
      const warning = await stack.api.waitForLog((l) => l.msg === 'audit write failed');
      expect(warning.err).toMatchObject({ type: 'DrizzleQueryError', cause: { code: '42703' } });
      expect(warning.audit).toMatchObject({ action: 'users.opt-out.delete', status: 200 });
    } finally {
      await stack.env.pool.query('ALTER TABLE audit_log RENAME COLUMN target_gone TO target');
    }
  });

  it('of a batch PostgreSQL refused give the SQLSTATE, not the value it quoted', async () => {
    const id = subject('worker');
    secrets.push(id);
    // A buffered event whose timestamp PostgreSQL cannot read: its error message quotes it.
    const entry = JSON.stringify({
      id: randomUUID(),
      service: 'logs',
      type: 't',
      timestamp: id,
      receivedAt: new Date().toISOString(),
      userId: id,
    });
    await stack.env.redis.xadd(`${stack.env.prefix}:events:{0}`, '*', 'v', '1', 'e', entry, 'tp', '');
    const worker = stack.workers[0];
    if (!worker) throw new Error('no worker');
    const moved = await worker.waitForLog((l) => l.msg === 'entries moved to the dead-letter stream');
    expect(moved).toMatchObject({ count: 1, first: '22007' });
    await waitFor(async () => (await call(stack.url, '/health/buffer')).body.deadLetters === 1);
  });

  it('hold no API key, no subject id and no statement parameter', async () => {
    // Every line written so far, the last ones included.
    const marker = `scan-${randomUUID()}`;
    await call(stack.url, '/health/live', { key: null, headers: { 'x-request-id': marker } });
    await stack.api.waitForLog((l) => l.msg === 'request' && l.requestId === marker);
    const logs = allLogs();
    for (const secret of secrets) expect(logs).not.toContain(secret.length > 20 ? secret.slice(8) : secret);
    expect(logs).not.toContain('Failed query');
    expect(logs).not.toContain('params:');
  });
});
