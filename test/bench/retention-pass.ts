/**
 * Archive throughput of a retention pass on N rows (default 1,000,000), against PostgreSQL's
 * own COPY out of the same rows (the floor of any archiver that reads them) in the same run.
 *
 *   node test/bench/retention-pass.ts [--rows 1000000] [--s3]
 *
 * A private database (a test database, tributary_test_…) gets N realistic rows (~300 bytes: message, nested
 * metadata, user ids) spread over three months that are entirely past a 30-day retention
 * (archived per service and dropped) and 20 % more in the month that is partly past it
 * (archived, then deleted by key in batches). Then `tributary retention` runs as a real
 * process against a directory (or, with --s3, a local s3rver) and its run record is read back.
 */
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { archiveEnv } from '../helpers/archive-reader.ts';
import { createTestEnv } from '../helpers/env.ts';
import { startS3Server } from '../helpers/s3-server.ts';
import { runCli } from './tributary-proc.ts';

const { values } = parseArgs({
  options: { rows: { type: 'string', default: '1000000' }, s3: { type: 'boolean' } },
});
const ROWS = Number(values.rows);
const db = createTestEnv();
const dbUrl = db.databaseUrl;
const tributary = (args: string[], env: Record<string, string>) =>
  runCli(args, { DATABASE_URL: dbUrl, ...env }).then((r) => ({ ...r, peakKb: r.peakMb * 1024 }));

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'tributary-bench-retention-'));
  const s3 = values.s3 ? await startS3Server({ bucket: 'bench-archive' }) : undefined;
  const store = s3 ? archiveEnv(s3.config) : { ARCHIVE_DIR: join(work, 'archive') };
  const client = new pg.Client({ connectionString: dbUrl });
  try {
    await tributary(['migrate'], { RETENTION_DAYS: '400' });
    await client.connect();
    const now = Date.now();
    const day = 86_400_000;
    // Three whole months 60–150 days back, and the month around 30 days back (partly expired).
    const fill = async (n: number, fromDaysAgo: number, toDaysAgo: number) => {
      await client.query(
        `INSERT INTO events (id, occurred_at, received_at, service, type, user_id, message, metadata)
         SELECT gen_random_uuid(), o, o + interval '120 ms',
                (ARRAY['checkout','search','auth','billing'])[1 + i % 4],
                (ARRAY['order.placed','page.viewed','user.login'])[1 + i % 3],
                CASE WHEN i % 5 = 0 THEN NULL ELSE 'user-' || (i % 50000) END,
                'request handled for customer ' || (i % 1000) || ' in region eu-west',
                jsonb_build_object('plan', (ARRAY['free','pro','team'])[1 + i % 3], 'email', 'u' || i || '@example.com',
                  'ip', '192.0.2.' || (i % 250), 'cart', jsonb_build_object('items', i % 7, 'total', (i % 9000) / 100.0),
                  'tags', jsonb_build_array('a', 'b', i % 11))
           FROM generate_series(1, $1::int) AS i,
                LATERAL (SELECT to_timestamp($2::float8 / 1000 + (i::float8 / $1) * ($3::float8 - $2::float8) / 1000)) AS t(o)`,
        [n, now - fromDaysAgo * day, now - toDaysAgo * day],
      );
    };
    const partialRows = Math.round(ROWS * 0.2);
    await fill(ROWS, 150, 60);
    await fill(partialRows, 40, 20);
    await client.query('VACUUM ANALYZE events');
    const { rows: size } = await client.query<{ bytes: string }>(
      `SELECT sum(pg_total_relation_size(c.oid))::text AS bytes FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass`,
    );

    // Floor: PostgreSQL writing every expired row as CSV, nothing else.
    const floorStart = performance.now();
    await pipeline(
      client.query(
        copyTo(
          `COPY (SELECT * FROM events WHERE occurred_at < now() - interval '30 days') TO STDOUT WITH (FORMAT csv)`,
        ),
      ),
      createWriteStream('/dev/null'),
    );
    const floorSeconds = (performance.now() - floorStart) / 1000;

    const pass = await tributary(['retention'], {
      ...store,
      RETENTION_DAYS: '30',
      ARCHIVE_WORK_DIR: join(work, 'scratch'),
    });
    const run = pass.last as {
      rowsArchived: number;
      bytesArchived: number;
      rowsDeleted: number;
      partitionsDropped: string[];
    };
    const expired = run.rowsArchived;
    const result = {
      rows: ROWS + partialRows,
      store: s3 ? 's3rver' : 'directory',
      tableBytes: Number(size[0]?.bytes),
      rowsArchived: expired,
      rowsDeletedByKey: run.rowsDeleted,
      partitionsDropped: run.partitionsDropped.length,
      archiveBytes: run.bytesArchived,
      bytesPerRow: +(run.bytesArchived / expired).toFixed(1),
      passSeconds: +pass.seconds.toFixed(1),
      rowsPerSecond: Math.round(expired / pass.seconds),
      peakRssMb: Math.round(pass.peakKb / 1024),
      copyOutFloorRowsPerSecond: Math.round(expired / floorSeconds),
      ratioToCopyOut: +(floorSeconds / pass.seconds).toFixed(2),
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await client.end().catch(() => {});
    await db.cleanup();
    await s3?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
