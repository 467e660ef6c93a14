import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** What is stored (or read back): the byte count and SHA-256 of exactly those bytes. */
export interface StoredObject {
  key: string;
  size: number;
  /** Lowercase hex. */
  sha256: string;
}

/** Where retention writes the archive and compliance reads it: S3-compatible storage or a local directory. */
export interface ObjectStore {
  /** Human-readable location, e.g. "s3://bucket" or "file:///dir", for logs and the admin API. */
  readonly location: string;
  /**
   * Uploads a local file, streamed (multipart on S3), and returns its size and SHA-256 computed
   * while reading it. Overwrites an existing key. Atomic for readers: a reader sees the old
   * object or the whole new one.
   */
  putFile(key: string, path: string, contentType: string): Promise<StoredObject>;
  /** Small objects (manifests); same guarantees as putFile. */
  putBytes(key: string, body: Uint8Array, contentType: string): Promise<StoredObject>;
  /**
   * Downloads to a local file (streamed) and returns size and SHA-256 of the bytes actually
   * read back. Throws ObjectNotFoundError if absent.
   */
  getFile(key: string, path: string): Promise<StoredObject>;
  /** Throws ObjectNotFoundError if absent. */
  getBytes(key: string): Promise<Uint8Array>;
  /** Size, or undefined when absent. */
  head(key: string): Promise<{ size: number } | undefined>;
  /** Every key starting with `prefix` (a plain string prefix, as in S3), sorted. */
  list(prefix: string): Promise<string[]>;
  /** Deletes; no error when absent. */
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}

/** The key is not in the store (S3 NoSuchKey / 404, or no such file). */
export class ObjectNotFoundError extends Error {
  readonly key: string;

  constructor(key: string, options?: ErrorOptions) {
    super(`object not found: ${key}`, options);
    this.name = 'ObjectNotFoundError';
    this.key = key;
  }
}

/** A pass-through stream that counts and hashes what flows through it. */
export class Sha256Stream extends Transform {
  readonly #hash = createHash('sha256');
  #size = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.#size += chunk.byteLength;
    callback(null, chunk);
  }

  /** Size and hex SHA-256 of everything seen; call once the stream has finished. */
  result(key: string): StoredObject {
    return { key, size: this.#size, sha256: this.#hash.digest('hex') };
  }
}

/** Size and SHA-256 of an in-memory body. */
export function describeBytes(key: string, body: Uint8Array): StoredObject {
  return { key, size: body.byteLength, sha256: createHash('sha256').update(body).digest('hex') };
}
