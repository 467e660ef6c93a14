import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { type ArchiveStoreConfig, createObjectStore } from '../../src/archive/object-store.ts';

/** A row as an independent reader (DuckDB) sees it in the archive. */
export interface ArchivedRow {
  key: string;
  id: string;
  /** occurred_at in microseconds since the epoch. */
  us: string;
  receivedUs: string;
  service: string;
  type: string;
  user_id: string | null;
  message: string | null;
  metadata: string | null;
  anonymized: boolean;
  /** The API key that wrote the row. */
  key_id: string | null;
  anonymous_id: string | null;
  /** Tracking-plan violations as JSON text (schema 4); null: none. */
  violations: string | null;
  year: string;
  month: string;
  hiveService: string;
}

export interface ArchiveSnapshot {
  /** Every object key in the store. */
  keys: string[];
  rows: ArchivedRow[];
  /** Parquet key → parsed manifest (undefined when it has none). */
  manifests: Map<string, Record<string, unknown> | undefined>;
  /** Parquet key → SHA-256 of its bytes and row count as DuckDB reads them. */
  files: Map<string, { sha256: string; bytes: number; rows: number }>;
  /** `DESCRIBE` of the files' columns: name → DuckDB type. */
  columnTypes: Record<string, string>;
  /** Compression codecs seen in the files' column chunks. */
  codecs: string[];
}

const lit = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** Downloads the whole archive from the store and reads every Parquet file with DuckDB. */
export async function readArchive(config: ArchiveStoreConfig): Promise<ArchiveSnapshot> {
  const store = createObjectStore(config);
  const dir = mkdtempSync(join(tmpdir(), 'tributary-archive-read-'));
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    await conn.run("SET TimeZone = 'UTC'");
    const keys = await store.list('');
    const manifests = new Map<string, Record<string, unknown> | undefined>();
    const files = new Map<string, { sha256: string; bytes: number; rows: number }>();
    const rows: ArchivedRow[] = [];
    let columnTypes: Record<string, string> = {};
    const codecs = new Set<string>();
    for (const key of keys.filter((k) => k.endsWith('.parquet'))) {
      const path = join(dir, key);
      mkdirSync(dirname(path), { recursive: true });
      await store.getFile(key, path);
      const bytes = readFileSync(path);
      const manifestKey = key.replace(/\.parquet$/, '.manifest.json');
      manifests.set(
        key,
        keys.includes(manifestKey)
          ? (JSON.parse(Buffer.from(await store.getBytes(manifestKey)).toString('utf8')) as Record<
              string,
              unknown
            >)
          : undefined,
      );
      const read = await conn.runAndReadAll(
        `SELECT id, epoch_us(occurred_at)::VARCHAR AS us, epoch_us(received_at)::VARCHAR AS "receivedUs", service,
                type, user_id, message, metadata::VARCHAR AS metadata, anonymized, key_id, anonymous_id,
                violations::VARCHAR AS violations
           FROM read_parquet(${lit(path)}, hive_partitioning = false)`,
      );
      const [, year = '', month = '', hiveService = ''] =
        /^events\/year=(\d{4})\/month=(\d{2})\/service=([^/]+)\/part-[^/]+\.parquet$/.exec(key) ?? [];
      const fileRows = (
        read.getRowObjectsJson() as unknown as Omit<ArchivedRow, 'key' | 'year' | 'month' | 'hiveService'>[]
      ).map((r) => ({ ...r, year, month, hiveService }));
      for (const r of fileRows) rows.push({ ...r, key });
      files.set(key, {
        sha256: createHash('sha256').update(bytes).digest('hex'),
        bytes: bytes.length,
        rows: fileRows.length,
      });
      const described = await conn.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${lit(path)})`);
      columnTypes = Object.fromEntries(
        (described.getRowObjectsJson() as { column_name: string; column_type: string }[]).map((c) => [
          c.column_name,
          c.column_type,
        ]),
      );
      const meta = await conn.runAndReadAll(
        `SELECT DISTINCT compression FROM parquet_metadata(${lit(path)})`,
      );
      for (const m of meta.getRowObjectsJson() as { compression: string }[]) codecs.add(m.compression);
    }
    return { keys, rows, manifests, files, columnTypes, codecs: [...codecs] };
  } finally {
    conn.closeSync();
    db.closeSync();
    rmSync(dir, { recursive: true, force: true });
    await store.close();
  }
}

/** Environment variables that point a Tributary process at an archive store configuration. */
export function archiveEnv(config: ArchiveStoreConfig): Record<string, string> {
  const env: Record<string, string> = {
    ARCHIVE_DIR: config.ARCHIVE_DIR,
    ARCHIVE_S3_REGION: config.ARCHIVE_S3_REGION,
    ARCHIVE_S3_FORCE_PATH_STYLE: String(config.ARCHIVE_S3_FORCE_PATH_STYLE),
    ARCHIVE_S3_CHECKSUMS: config.ARCHIVE_S3_CHECKSUMS,
  };
  if (config.ARCHIVE_S3_ENDPOINT) env.ARCHIVE_S3_ENDPOINT = config.ARCHIVE_S3_ENDPOINT;
  if (config.ARCHIVE_S3_BUCKET) env.ARCHIVE_S3_BUCKET = config.ARCHIVE_S3_BUCKET;
  if (config.ARCHIVE_S3_ACCESS_KEY_ID) env.ARCHIVE_S3_ACCESS_KEY_ID = config.ARCHIVE_S3_ACCESS_KEY_ID;
  if (config.ARCHIVE_S3_SECRET_ACCESS_KEY)
    env.ARCHIVE_S3_SECRET_ACCESS_KEY = config.ARCHIVE_S3_SECRET_ACCESS_KEY;
  return env;
}
