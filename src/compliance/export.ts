import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import type { ObjectStore } from '../archive/object-store.ts';
import { ParquetFiles } from '../retention/parquet.ts';
import { pseudonymize } from '../retention/policy.ts';
import type { Metrics } from '../telemetry/metrics.ts';

export interface ExportOptions {
  pool: pg.Pool;
  store: ObjectStore;
  metrics: Metrics;
  workDir: string;
  anonymizeSecret?: string | undefined;
  pageRows?: number;
}

/**
 * Every stored event of a subject as NDJSON lines: from PostgreSQL (keyset pages, oldest
 * first, one short query each, so memory stays flat and no connection is held between
 * pages), then from each archive object holding some (read with DuckDB a chunk at a time).
 * Rows are found under the subject's id and, with ANONYMIZE_SECRET, its HMAC pseudonym.
 * Archives whose rows are restored into PostgreSQL are skipped (they were read there).
 * The consumer pulls lines one at a time, so a slow client slows the reading down.
 */
export async function* exportSubject(o: ExportOptions, userId: string): AsyncGenerator<string> {
  const ids = o.anonymizeSecret ? [userId, pseudonymize(o.anonymizeSecret, userId)] : [userId];
  const page = o.pageRows ?? 1_000;
  let after: { ts: string; id: string } | undefined;
  for (;;) {
    const { rows } = await o.pool.query<{ line: string; ts: string; id: string }>(
      `SELECT json_build_object('id', id, 'service', service, 'type', type,
                'timestamp', to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                'receivedAt', to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                'userId', user_id, 'message', message, 'metadata', metadata, 'source', 'database')::text AS line,
              occurred_at::text AS ts, id
         FROM events
        WHERE user_id = ANY($1::text[]) AND ($2::timestamptz IS NULL OR (occurred_at, id) > ($2::timestamptz, $3::uuid))
        ORDER BY occurred_at, id LIMIT $4`,
      [ids, after?.ts ?? null, after?.id ?? null, page],
    );
    for (const r of rows) yield `${r.line}\n`;
    o.metrics.exportRows.inc({ source: 'database' }, rows.length);
    if (rows.length < page) break;
    const last = rows[rows.length - 1] as { ts: string; id: string };
    after = { ts: last.ts, id: last.id };
  }

  const { rows: archives } = await o.pool.query<{ id: string; object_key: string }>(
    `SELECT id, object_key FROM archives WHERE status = 'complete' AND row_count > 0 ORDER BY min_occurred_at, id`,
  );
  if (archives.length === 0) return;
  const dir = join(
    o.workDir,
    `export-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`,
  );
  await mkdir(dir, { recursive: true });
  const parquet = await ParquetFiles.open(dir, '128MB');
  try {
    for (const a of archives) {
      const file = join(dir, `${a.id}.parquet`);
      await o.store.getFile(a.object_key, file);
      for await (const chunk of parquet.subjectRows(file, ids)) {
        for (const row of chunk) yield `${JSON.stringify({ ...row, source: 'archive' })}\n`;
        o.metrics.exportRows.inc({ source: 'archive' }, chunk.length);
      }
      await rm(file, { force: true });
    }
  } finally {
    parquet.close();
    await rm(dir, { recursive: true, force: true });
  }
}
