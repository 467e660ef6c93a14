import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARCHIVE_COLUMNS, ARCHIVE_SCHEMA_VERSION, ParquetFiles } from '../../src/archive/parquet.ts';

/**
 * Archives written before `key_id` was archived (schema version 1), before `anonymous_id`
 * (version 2) or before `violations` (version 3) are still restored: their rows come back
 * with NULL in the columns they lack. Files of the current version keep all three.
 */
const dir = mkdtempSync(join(tmpdir(), 'tributary-archive-versions-'));
let files: ParquetFiles;
beforeAll(async () => {
  files = await ParquetFiles.open(join(dir, 'work'));
});
afterAll(() => {
  files?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A Parquet file with the given SELECT list, written by DuckDB as an older Tributary would. */
async function writeParquet(path: string, select: string): Promise<void> {
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    await conn.run("SET TimeZone = 'UTC'");
    await conn.run(`COPY (SELECT ${select}) TO '${path}' (FORMAT parquet, COMPRESSION zstd)`);
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

const V1_SELECT = `'9b2f1e4c-0000-4000-8000-000000000001' AS id,
  TIMESTAMPTZ '2026-01-02 03:04:05.123456+00' AS occurred_at,
  TIMESTAMPTZ '2026-01-02 03:04:06+00' AS received_at,
  'shop' AS service, 'order.placed' AS type, 'u-1' AS user_id, NULL::VARCHAR AS message,
  '{"a":1}'::JSON AS metadata, false AS anonymized`;

describe('archive columns by schema version', () => {
  it('the current version archives key_id, then anonymous_id, then violations, last', () => {
    expect(ARCHIVE_SCHEMA_VERSION).toBe(4);
    expect(ARCHIVE_COLUMNS.slice(-3)).toEqual([
      { name: 'key_id', type: 'VARCHAR' },
      { name: 'anonymous_id', type: 'VARCHAR' },
      { name: 'violations', type: 'JSON' },
    ]);
  });

  it('a version 1 file (no key_id column) reads back with key_id and anonymous_id NULL', async () => {
    const parquet = join(dir, 'v1.parquet');
    const csv = join(dir, 'v1.csv');
    await writeParquet(parquet, V1_SELECT);
    await files.parquetToCsv(parquet, csv);
    expect(readFileSync(csv, 'utf8')).toBe(
      '9b2f1e4c-0000-4000-8000-000000000001,2026-01-02T03:04:05.123456Z,2026-01-02T03:04:06.000000Z,' +
        '"shop","order.placed","u-1",,"{""a"":1}",false,,,\n',
    );
  });

  it('a version 2 file keeps the key that wrote each row, with anonymous_id NULL', async () => {
    const parquet = join(dir, 'v2.parquet');
    const csv = join(dir, 'v2.csv');
    await writeParquet(parquet, `${V1_SELECT}, 'key-1' AS key_id`);
    await files.parquetToCsv(parquet, csv);
    expect(readFileSync(csv, 'utf8').trimEnd().split(',').slice(-3)).toEqual(['"key-1"', '', '']);
  });

  it('a version 3 file keeps the anonymous id, an empty one apart from NULL', async () => {
    const parquet = join(dir, 'v3.parquet');
    const csv = join(dir, 'v3.csv');
    await writeParquet(parquet, `${V1_SELECT}, 'key-1' AS key_id, 'anon-7' AS anonymous_id`);
    await files.parquetToCsv(parquet, csv);
    expect(readFileSync(csv, 'utf8').trimEnd().split(',').slice(-3)).toEqual(['"key-1"', '"anon-7"', '']);
  });

  it('a version 4 file keeps the violations as JSON', async () => {
    const parquet = join(dir, 'v4.parquet');
    const csv = join(dir, 'v4.csv');
    const violations = '[{"path":"metadata.total","code":"out_of_range","message":"must be >= 0"}]';
    await writeParquet(
      parquet,
      `${V1_SELECT}, 'key-1' AS key_id, NULL::VARCHAR AS anonymous_id, '${violations}'::JSON AS violations`,
    );
    await files.parquetToCsv(parquet, csv);
    expect(readFileSync(csv, 'utf8').trimEnd()).toMatch(
      /,"key-1",,"\[\{""path"":""metadata.total"",""code"":""out_of_range"",""message"":""must be >= 0""\}\]"$/,
    );
  });
});
