import type { ObjectStore } from './object-store.ts';
import { ARCHIVE_COLUMNS, ARCHIVE_SCHEMA_VERSION, type ParquetStats } from './parquet.ts';

/**
 * The JSON object stored beside each Parquet file: what the file holds and how to check it
 * (size and SHA-256 of the bytes, row count). A restore trusts the manifest, not the
 * database, so it works on a new database too.
 */
export interface ArchiveManifest {
  schemaVersion: number;
  archiveId: string;
  runId: string | null;
  objectKey: string;
  manifestKey: string;
  month: string;
  service: string;
  rangeFrom: string;
  rangeTo: string;
  rows: number;
  bytes: number;
  sha256: string;
  minOccurredAt?: string;
  maxOccurredAt?: string;
  format: 'parquet';
  compression: 'zstd';
  columns: { name: string; type: string }[];
  createdAt: string;
}

/** Size and SHA-256 of an object as written or read back. */
export interface ObjectDigest {
  size: number;
  sha256: string;
}

/** What a manifest records of the archive it describes (an `archives` row fits). */
export interface ArchiveIdentity {
  id: string;
  runId: string | null;
  objectKey: string;
  manifestKey: string;
  month: string;
  service: string;
  rangeFrom: Date;
  rangeTo: Date;
  createdAt: Date;
}

/** The manifest of a freshly written and verified archive object. */
export function buildManifest(
  a: ArchiveIdentity,
  stats: ParquetStats,
  object: ObjectDigest,
): ArchiveManifest {
  return {
    schemaVersion: ARCHIVE_SCHEMA_VERSION,
    archiveId: a.id,
    runId: a.runId,
    objectKey: a.objectKey,
    manifestKey: a.manifestKey,
    month: a.month,
    service: a.service,
    rangeFrom: a.rangeFrom.toISOString(),
    rangeTo: a.rangeTo.toISOString(),
    rows: stats.rows,
    bytes: object.size,
    sha256: object.sha256,
    ...(stats.minOccurredAt ? { minOccurredAt: stats.minOccurredAt } : {}),
    ...(stats.maxOccurredAt ? { maxOccurredAt: stats.maxOccurredAt } : {}),
    format: 'parquet',
    compression: 'zstd',
    columns: ARCHIVE_COLUMNS.map((c) => ({ name: c.name, type: c.type })),
    createdAt: a.createdAt.toISOString(),
  };
}

/**
 * The manifest of an object rewritten in place (an erasure removed rows): same archive,
 * new contents. A time bound the new file has no value for keeps its old value.
 */
export function withContents(m: ArchiveManifest, stats: ParquetStats, object: ObjectDigest): ArchiveManifest {
  return {
    ...m,
    rows: stats.rows,
    bytes: object.size,
    sha256: object.sha256,
    ...(stats.minOccurredAt ? { minOccurredAt: stats.minOccurredAt } : {}),
    ...(stats.maxOccurredAt ? { maxOccurredAt: stats.maxOccurredAt } : {}),
  };
}

/** Whether an object read back is the one its manifest describes (same size and SHA-256). */
export function matchesManifest(m: Pick<ArchiveManifest, 'bytes' | 'sha256'>, got: ObjectDigest): boolean {
  return got.sha256 === m.sha256 && got.size === m.bytes;
}

/** The manifest as stored: indented JSON with a final newline, for people reading the bucket. */
export function serializeManifest(m: ArchiveManifest): Buffer {
  return Buffer.from(`${JSON.stringify(m, null, 2)}\n`);
}

/** A stored manifest's bytes, parsed. */
export function parseManifest(bytes: Uint8Array): ArchiveManifest {
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as ArchiveManifest;
}

/** Writes (or replaces) the manifest, at its own key unless told another. */
export async function putManifest(
  store: ObjectStore,
  m: ArchiveManifest,
  key = m.manifestKey,
): Promise<void> {
  await store.putBytes(key, serializeManifest(m), 'application/json');
}

/** Reads the manifest stored at `key`. */
export async function getManifest(store: ObjectStore, key: string): Promise<ArchiveManifest> {
  return parseManifest(await store.getBytes(key));
}
