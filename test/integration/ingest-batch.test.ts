import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, event, type Stack, startStack, waitFor } from '../helpers/stack.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workers: 1 });
});
afterAll(async () => {
  await stack?.close();
});

const storedIds = async (ids: string[]) => {
  const res = await stack.env.pool.query<{ id: string }>('SELECT id FROM events WHERE id = ANY($1::uuid[])', [
    ids,
  ]);
  return res.rows.map((r) => r.id).sort();
};

describe('POST /v1/events/batch', () => {
  it('accepts the valid events, rejects the others by index, and stores exactly the accepted ones', async () => {
    const good = [event(), event({ userId: 'alice' }), event()];
    const body = { events: [good[0], { service: 'x' }, good[1], 'nope', good[2], { ...event(), extra: 1 }] };
    const res = await call(stack.url, '/v1/events/batch', { body });
    expect(res.status).toBe(202);
    expect(res.body.accepted).toBe(3);
    expect(res.body.duplicates).toBe(0);
    expect(res.body.skipped).toBe(0);
    expect(res.body.ids).toEqual(good.map((e) => e.id));
    expect(res.body.rejected.map((r: { index: number; code: string }) => [r.index, r.code])).toEqual([
      [1, 'invalid_event'],
      [3, 'invalid_event'],
      [5, 'invalid_event'],
    ]);
    expect(res.body.rejected[0].details[0]).toMatchObject({ path: 'type', code: 'required' });
    const ids = good.map((e) => String(e.id));
    await waitFor(async () => (await storedIds(ids)).length === 3, 15_000, 'rows');
    expect(await storedIds(ids)).toEqual([...ids].sort());
  });

  it('counts repeats inside a batch and across batches as duplicates', async () => {
    const a = event();
    const b = event();
    const first = await call(stack.url, '/v1/events/batch', { body: { events: [a, b, a] } });
    expect(first.body).toMatchObject({ accepted: 2, duplicates: 1, ids: [a.id, b.id, a.id] });
    const second = await call(stack.url, '/v1/events/batch', { body: { events: [a, b] } });
    expect(second.body).toMatchObject({ accepted: 0, duplicates: 2 });
  });

  it('takes NDJSON, with a broken line rejected on its own', async () => {
    const a = event();
    const b = event();
    const raw = `${JSON.stringify(a)}\n{not json\n\n${JSON.stringify(b)}\n`;
    const res = await call(stack.url, '/v1/events/batch', { raw, contentType: 'application/x-ndjson' });
    expect(res.status).toBe(202);
    expect(res.body.accepted).toBe(2);
    expect(res.body.ids).toEqual([a.id, b.id]);
    expect(res.body.rejected).toEqual([
      { index: 1, code: 'invalid_json', message: 'line is not valid JSON' },
    ]);
  });

  it('takes gzip NDJSON', async () => {
    const events = Array.from({ length: 50 }, () => event());
    const raw = events.map((e) => JSON.stringify(e)).join('\n');
    const res = await call(stack.url, '/v1/events/batch', {
      raw,
      contentType: 'application/x-ndjson',
      gzip: true,
    });
    expect(res.body.accepted).toBe(50);
  });

  it('413 for more than 1000 events, JSON or NDJSON', async () => {
    const events = Array.from({ length: 1001 }, () => ({ service: 's', type: 't' }));
    const json = await call(stack.url, '/v1/events/batch', { body: { events } });
    expect(json.status).toBe(413);
    expect(json.body.error.code).toBe('batch_too_large');
    const nd = await call(stack.url, '/v1/events/batch', {
      raw: events.map((e) => JSON.stringify(e)).join('\n'),
      contentType: 'application/x-ndjson',
    });
    expect(nd.status).toBe(413);
    const exactly = await call(stack.url, '/v1/events/batch', { body: { events: events.slice(1) } });
    expect(exactly.status).toBe(202);
    expect(exactly.body.accepted).toBe(1000);
  });

  it('400 for an envelope that is not {"events": [...]}', async () => {
    for (const body of [
      { event: [] },
      { events: {} },
      [event()],
      { events: [] },
      { events: [event()], more: 1 },
    ]) {
      const res = await call(stack.url, '/v1/events/batch', { body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('invalid_batch');
    }
  });
});
