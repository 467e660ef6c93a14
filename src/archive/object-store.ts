import { DirectoryObjectStore } from './object-store-directory.ts';
import { S3ObjectStore } from './object-store-s3.ts';
import type { ObjectStore } from './object-store-shared.ts';

export { ObjectNotFoundError, type ObjectStore, type StoredObject } from './object-store-shared.ts';

/** The archive settings from config.ts that choose and reach the object store. */
export interface ArchiveStoreConfig {
  /** Local directory used when no bucket is configured. */
  ARCHIVE_DIR: string;
  /** S3-compatible endpoint URL; absent for AWS S3 itself. */
  ARCHIVE_S3_ENDPOINT?: string | undefined;
  /** Setting it selects S3 over ARCHIVE_DIR. */
  ARCHIVE_S3_BUCKET?: string | undefined;
  ARCHIVE_S3_REGION: string;
  /** With the secret; when either is absent the SDK's default credential chain applies. */
  ARCHIVE_S3_ACCESS_KEY_ID?: string | undefined;
  ARCHIVE_S3_SECRET_ACCESS_KEY?: string | undefined;
  ARCHIVE_S3_FORCE_PATH_STYLE: boolean;
  /**
   * The client's requestChecksumCalculation / responseChecksumValidation. 'when_supported' also
   * has uploads carry a SHA-256 that S3 verifies; 'when_required' is for servers such as s3rver
   * that store checksum-framed bodies verbatim.
   */
  ARCHIVE_S3_CHECKSUMS: 'when_supported' | 'when_required';
}

/** The S3 store when ARCHIVE_S3_BUCKET is set, else the directory store on ARCHIVE_DIR. */
export function createObjectStore(config: ArchiveStoreConfig): ObjectStore {
  const bucket = config.ARCHIVE_S3_BUCKET;
  if (bucket) return new S3ObjectStore({ ...config, ARCHIVE_S3_BUCKET: bucket });
  return new DirectoryObjectStore(config.ARCHIVE_DIR);
}
