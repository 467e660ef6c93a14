import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY } from '../helpers/env.ts';
import { documentedFetch } from '../helpers/openapi.ts';
import { type Stack, startStack } from '../helpers/stack.ts';

const ROWS = Number(process.env.EXPORT_ROWS ?? 1_000_000);
const rssMb = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;

describe('export of a subject with 1,000,000 events', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ env: { RETENTION_SCHEDULE: 'off' } });
    await stack.env.pool.query(
      `INSERT INTO events (id, occurred_at, received_at, service, type, user_id, message, metadata)
       SELECT gen_random_uuid(), now() - (i::float8 / $1) * interval '20 days', now(), 'checkout', 'order.placed',
              'big-subject', 'request handled for customer ' || (i % 1000),
              jsonb_build_object('plan', 'pro', 'items', i % 7)
         FROM generate_series(1, $1::int) AS i`,
      [ROWS],
    );
    await stack.env.pool.query('ANALYZE events');
  }, 180_000);

  afterAll(async () => {
    await stack?.close();
  });

  it('streams every row while the API’s memory stays bounded, well below the size of the export', async () => {
    const pid = stack.api.child.pid as number;
    const before = rssMb(pid);
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssMb(pid));
    }, 100);
    const res = await documentedFetch(`${stack.url}/v1/users/big-subject/events/export`, {
      headers: { 'x-api-key': ADMIN_KEY },
    });
    expect(res.status).toBe(200);
    let lines = 0;
    let bytes = 0;
    let first = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      if (first.length < 500) first += Buffer.from(chunk).toString('utf8');
      const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
      for (let at = buf.indexOf(10); at !== -1; at = buf.indexOf(10, at + 1)) lines++;
    }
    clearInterval(sampler);
    const grown = peak - before;
    process.stdout.write(
      `${JSON.stringify({ lines, mb: Math.round(bytes / 1_048_576), rssBeforeMb: Math.round(before), peakMb: Math.round(peak) })}\n`,
    );
    expect(lines).toBe(ROWS);
    expect(JSON.parse(first.split('\n')[0] as string)).toMatchObject({
      userId: 'big-subject',
      source: 'database',
    });
    // The export is ~350 MB; the process may grow by its heap's headroom, never by the export.
    expect(grown).toBeLessThan(200);
  }, 300_000);
});
