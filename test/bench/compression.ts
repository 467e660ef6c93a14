/**
 * Scenario `metadata-lz4` (by name only): events.metadata stored with pglz (PostgreSQL's
 * default) against lz4 (migration 0011), on the bench's own rows (payload.ts, about 250 bytes
 * of metadata) and on rows whose metadata is large enough for TOAST to compress it (the same
 * metadata with 40 line items, about 4 kB). Each case: BENCH_COMPRESSION_ROWS (50,000) rows
 * into two tables made `LIKE events`, one per method, same rows, same run; reported: bytes per
 * row of the table with its TOAST (pg_total_relation_size), the average stored size of
 * metadata (pg_column_size), rows per second of the inserts, and a full read of metadata.
 */

import { type BenchContext, envNumber, log, round } from './measure.ts';
import { eventJson } from './payload.ts';

type Method = 'pglz' | 'lz4';

const withItems = (metadata: Record<string, unknown>) => ({
  ...metadata,
  items: Array.from({ length: 40 }, (_, i) => ({
    sku: `sku-${(i * 7919) % 10_000}`,
    name: `Product ${i} in the catalogue`,
    quantity: (i % 4) + 1,
    priceCents: (i * 1_299) % 50_000,
  })),
});

export async function metadataCompression(ctx: BenchContext): Promise<void> {
  if (!ctx.picked.has('metadata-lz4')) return;
  const rows = envNumber('BENCH_COMPRESSION_ROWS', 50_000);
  const pool = ctx.env.pool;
  for (const [label, shape] of [
    ['bench rows', (m: Record<string, unknown>) => m],
    ['4 kB metadata', withItems],
  ] as const) {
    const metadata = Array.from({ length: rows }, () =>
      JSON.stringify(shape((JSON.parse(eventJson()) as { metadata: Record<string, unknown> }).metadata)),
    );
    const result: Record<
      Method,
      { bytesPerRow: number; metadataBytes: number; rowsPerS: number; readMs: number }
    > = {} as never;
    for (const method of ['pglz', 'lz4'] as const) {
      const table = `bench_metadata_${method}`;
      await pool.query(`DROP TABLE IF EXISTS ${table}`);
      await pool.query(`CREATE TABLE ${table} (LIKE events INCLUDING DEFAULTS)`);
      await pool.query(`ALTER TABLE ${table} ALTER COLUMN metadata SET COMPRESSION ${method}`);
      const started = performance.now();
      for (let i = 0; i < rows; i += 1_000) {
        await pool.query(
          `INSERT INTO ${table} (id, occurred_at, received_at, service, type, metadata)
           SELECT gen_random_uuid(), now(), now(), 'checkout', 'order.placed', m::jsonb FROM unnest($1::text[]) AS m`,
          [metadata.slice(i, i + 1_000)],
        );
      }
      const seconds = (performance.now() - started) / 1000;
      await pool.query(`VACUUM ANALYZE ${table}`);
      const size = await pool.query<{ total: string; metadata: string; methods: string }>(
        `SELECT pg_total_relation_size('${table}')::text AS total,
                avg(pg_column_size(metadata))::text AS metadata,
                string_agg(DISTINCT coalesce(pg_column_compression(metadata), 'none'), ',') AS methods
           FROM ${table}`,
      );
      const readStarted = performance.now();
      await pool.query(`SELECT sum(length(metadata::text)) FROM ${table}`);
      const readMs = performance.now() - readStarted;
      const row = size.rows[0] as { total: string; metadata: string; methods: string };
      result[method] = {
        bytesPerRow: round(Number(row.total) / rows, 1),
        metadataBytes: round(Number(row.metadata), 1),
        rowsPerS: Math.round(rows / seconds),
        readMs: round(readMs, 1),
      };
      log(`metadata-lz4: ${label}, ${method}: ${JSON.stringify(result[method])} (stored as ${row.methods})`);
      await pool.query(`DROP TABLE ${table}`);
    }
    const key = `metadata-lz4 (${label}, ${rows} rows)`;
    ctx.report.checks[`${key}: bytes per row pglz → lz4`] =
      `${result.pglz.bytesPerRow} → ${result.lz4.bytesPerRow}`;
    ctx.report.checks[`${key}: metadata bytes pglz → lz4`] =
      `${result.pglz.metadataBytes} → ${result.lz4.metadataBytes}`;
    ctx.report.checks[`${key}: insert rows/s lz4 ÷ pglz`] = round(
      result.lz4.rowsPerS / result.pglz.rowsPerS,
      2,
    );
    ctx.report.checks[`${key}: full read ms pglz → lz4`] = `${result.pglz.readMs} → ${result.lz4.readMs}`;
  }
}
