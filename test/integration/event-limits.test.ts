import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, event, type Stack, startStack, waitFor } from '../helpers/stack.ts';
import { waitUntilStored } from '../helpers/stored-once.ts';

/**
 * Limits that count events, and the share of the buffer one key may hold (ARCHITECTURE §11).
 * No worker runs until the last test, so what is accepted stays in the buffer.
 */
const MAX_EVENTS = 400;
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    env: {
      DEFAULT_KEY_RATE_LIMIT: '5',
      BUFFER_MAX_EVENTS: '400',
      BUFFER_MAX_SHARE_PER_KEY: '0.25',
      CHECKPOINT_SPILL_THRESHOLD: '300',
    },
  });
});
afterAll(async () => {
  await stack?.close();
});

async function createKey(body: Record<string, unknown>): Promise<{ id: string; key: string }> {
  const res = await call(stack.url, '/v1/admin/keys', {
    body: { name: 'k', scopes: ['ingest', 'read'], ...body },
  });
  expect(res.status).toBe(201);
  return res.body;
}

const batchOf = (n: number) => ({ events: Array.from({ length: n }, () => event()) });

describe('limits count events', () => {
  it('a batch spends one per event; the limit refuses the events, not the batches', async () => {
    const { key } = await createKey({ rateLimitPerMinute: 10 });
    const first = await call(stack.url, '/v1/events/batch', { key, body: batchOf(4) });
    expect(first.status).toBe(202);
    expect(first.headers.get('ratelimit-remaining')).toBe('6');
    expect((await call(stack.url, '/v1/events/batch', { key, body: batchOf(4) })).status).toBe(202);
    // 2 left: a third batch of 4 is refused, a single event is not.
    const third = await call(stack.url, '/v1/events/batch', { key, body: batchOf(4) });
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe('rate_limited');
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const single = await call(stack.url, '/v1/events', { key, body: event() });
    expect(single.status).toBe(202);
    expect(single.headers.get('ratelimit-remaining')).toBe('1');
    // Invalid events count too: the key sent them.
    const invalid = await call(stack.url, '/v1/events/batch', { key, body: { events: [{}, {}] } });
    expect(invalid.status).toBe(429);
  });

  it('a batch larger than the whole limit is refused as too large, not to be retried', async () => {
    const { key } = await createKey({ rateLimitPerMinute: 10 });
    const res = await call(stack.url, '/v1/events/batch', { key, body: batchOf(11) });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('batch_too_large');
    expect(res.headers.get('retry-after')).toBeNull();
    // Nothing was spent: the full limit is still there.
    const ok = await call(stack.url, '/v1/events/batch', { key, body: batchOf(10) });
    expect(ok.status).toBe(202);
  });

  it('DEFAULT_KEY_RATE_LIMIT applies to keys without a limit, not to keys with one, nor to the bootstrap key', async () => {
    const plain = await createKey({});
    const own = await createKey({ rateLimitPerMinute: 1000 });
    const a = await call(stack.url, '/v1/events', { key: plain.key, body: event() });
    expect(a.headers.get('ratelimit-limit')).toBe('5');
    const b = await call(stack.url, '/v1/events', { key: own.key, body: event() });
    expect(b.headers.get('ratelimit-limit')).toBe('1000');
    const admin = await call(stack.url, '/v1/events', { body: event() });
    expect(admin.headers.get('ratelimit-limit')).toBeNull();
    expect((await call(stack.url, '/v1/events/batch', { key: plain.key, body: batchOf(5) })).status).toBe(
      429,
    );
  });
});

describe('BUFFER_MAX_SHARE_PER_KEY', () => {
  it('a key flooding the buffer is held back alone; the others go on; it is let in again once the buffer drains', async () => {
    const flood = await createKey({ name: 'flood' });
    const quiet = await createKey({ name: 'quiet' });
    // The flood key and the quiet one are not rate limited here (their own high limit).
    await call(stack.url, `/v1/admin/keys/${flood.id}`, {
      method: 'PATCH',
      body: { rateLimitPerMinute: 1_000_000 },
    });
    await call(stack.url, `/v1/admin/keys/${quiet.id}`, {
      method: 'PATCH',
      body: { rateLimitPerMinute: 1_000_000 },
    });
    const latency = async (n: number) => {
      const ms: number[] = [];
      for (let i = 0; i < n; i++) {
        const t = performance.now();
        const res = await call(stack.url, '/v1/events', { key: quiet.key, body: event() });
        ms.push(performance.now() - t);
        expect(res.status).toBe(202);
      }
      return ms.sort((x, y) => x - y)[Math.floor(n / 2)] as number;
    };
    const alone = await latency(20);

    // Batches of 25 until the key is refused: its share is 100 of BUFFER_MAX_EVENTS 400.
    let accepted = 0;
    const refused = await waitFor(
      async () => {
        const res = await call(stack.url, '/v1/events/batch', { key: flood.key, body: batchOf(25) });
        if (res.status === 202) accepted += res.body.accepted;
        return res.status === 429 ? res : undefined;
      },
      20_000,
      'the flooding key refused',
      25,
    );
    expect(refused.body.error.code).toBe('backpressure');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(accepted).toBeGreaterThan(MAX_EVENTS * 0.25 - 25);
    expect(accepted).toBeLessThan(MAX_EVENTS);
    // Another key is still accepted, about as fast as before.
    const flooded = await latency(20);
    expect(flooded).toBeLessThan(alone * 3 + 10);
    const metrics = await fetch(`${stack.url}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(new RegExp(`tributary_key_buffered_events\\{key_id="${flood.id}"\\} \\d+`));

    // Workers drain the buffer: the count heals and the key is let in again.
    await stack.addWorker();
    await waitFor(
      async () =>
        (await call(stack.url, '/v1/events/batch', { key: flood.key, body: batchOf(25) })).status === 202,
      30_000,
      'the flooding key let in again',
    );
    const last = event();
    expect((await call(stack.url, '/v1/events', { key: flood.key, body: last })).status).toBe(202);
    await waitUntilStored(stack.env.pool, [String(last.id)]);
  }, 90_000);
});
