/**
 * Export and erasure of one data subject with N stored events (default 1,000,000).
 *
 *   node test/bench/dsar.ts [--rows 1000000]
 *
 * A private database (a test database, tributary_test_…) gets N events of one subject
 * (~300 bytes each, spread over the last 20 days) plus N/5 of others; a real `serve` process then streams the
 * subject's export over HTTP (rows/s, the API's peak RSS, the client reading as fast as it
 * can) and erases the subject (time until GET /v1/dsar/:id says completed). PostgreSQL's
 * COPY out of the same rows is the floor, measured in the same run.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { createTestEnv } from '../helpers/env.ts';
import { runCli, spawnTributary, watchPeakRss } from './tributary-proc.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000000' } } });
const ROWS = Number(values.rows);
const KEY = 'bench-admin-key-0123456789abcdef';
const SUBJECT = 'subject-1';
const db = createTestEnv({ settings: { ADMIN_API_KEY: KEY } });
const env = db.env();

async function main(): Promise<void> {
  await runCli(['migrate'], env);
  const client = new pg.Client({ connectionString: db.databaseUrl });
  await client.connect();
  const api = spawnTributary(['serve'], { ...env, LOG_LEVEL: 'info' });
  try {
    const fill = (n: number, user: string) =>
      client.query(
        `INSERT INTO events (id, occurred_at, received_at, service, type, user_id, message, metadata)
         SELECT gen_random_uuid(), now() - (i::float8 / $1) * interval '20 days', now(), 'checkout', 'order.placed',
                CASE WHEN $2 = '' THEN 'user-' || (i % 5000) ELSE $2 END,
                'request handled for customer ' || (i % 1000) || ' in region eu-west',
                jsonb_build_object('plan', 'pro', 'cart', jsonb_build_object('items', i % 7, 'total', (i % 9000) / 100.0))
           FROM generate_series(1, $1::int) AS i`,
        [n, user],
      );
    await fill(ROWS, SUBJECT);
    await fill(Math.round(ROWS / 5), '');
    await client.query('VACUUM ANALYZE events');

    const floorStart = performance.now();
    await pipeline(
      client.query(copyTo(`COPY (SELECT * FROM events WHERE user_id = '${SUBJECT}') TO STDOUT`)),
      createWriteStream('/dev/null'),
    );
    const floorSeconds = (performance.now() - floorStart) / 1000;

    const port = await new Promise<number>((resolve) => {
      let buf = '';
      api.stdout?.setEncoding('utf8').on('data', (c: string) => {
        buf += c;
        const m = /"port":(\d+)/.exec(buf);
        if (m) resolve(Number(m[1]));
      });
    });
    const url = `http://127.0.0.1:${port}`;
    const rss = watchPeakRss(api);

    const exportStart = performance.now();
    const res = await fetch(`${url}/v1/users/${SUBJECT}/events/export`, { headers: { 'x-api-key': KEY } });
    let lines = 0;
    let bytes = 0;
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      for (const ch of decoder.decode(chunk, { stream: true })) if (ch === '\n') lines++;
    }
    const exportSeconds = (performance.now() - exportStart) / 1000;
    const exportPeakMb = rss.peakMb;

    const eraseStart = performance.now();
    const erase = await fetch(`${url}/v1/users/${SUBJECT}/events`, {
      method: 'DELETE',
      headers: { 'x-api-key': KEY },
    });
    const { requestId } = (await erase.json()) as { requestId: string };
    let status: { status: string; deleted: Record<string, number> };
    for (;;) {
      const s = await fetch(`${url}/v1/dsar/${requestId}`, { headers: { 'x-api-key': KEY } });
      status = (await s.json()) as typeof status;
      if (status.status === 'completed' || status.status === 'failed') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const eraseSeconds = (performance.now() - eraseStart) / 1000;
    rss.stop();
    const left = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM events WHERE user_id = $1`,
      [SUBJECT],
    );
    process.stdout.write(
      `${JSON.stringify(
        {
          subjectRows: ROWS,
          otherRows: Math.round(ROWS / 5),
          export: {
            lines,
            bytes,
            seconds: +exportSeconds.toFixed(1),
            rowsPerSecond: Math.round(lines / exportSeconds),
            apiPeakRssMb: exportPeakMb,
            copyOutFloorRowsPerSecond: Math.round(ROWS / floorSeconds),
            ratioToCopyOut: +(floorSeconds / exportSeconds).toFixed(2),
          },
          erasure: {
            status: status.status,
            deleted: status.deleted,
            seconds: +eraseSeconds.toFixed(1),
            rowsPerSecond: Math.round((status.deleted.database ?? 0) / eraseSeconds),
            leftInDatabase: left.rows[0]?.n,
          },
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    api.kill('SIGKILL');
    await once(api, 'exit').catch(() => {});
    await client.end().catch(() => {});
    await db.cleanup();
  }
}

await main();
