import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  describeBytes,
  ObjectNotFoundError,
  type ObjectStore,
  Sha256Stream,
  type StoredObject,
} from './object-store-shared.ts';

/** The S3 settings an S3ObjectStore uses (a subset of ArchiveStoreConfig, bucket required). */
export interface S3StoreSettings {
  ARCHIVE_S3_ENDPOINT?: string | undefined;
  ARCHIVE_S3_BUCKET: string;
  ARCHIVE_S3_REGION: string;
  ARCHIVE_S3_ACCESS_KEY_ID?: string | undefined;
  ARCHIVE_S3_SECRET_ACCESS_KEY?: string | undefined;
  ARCHIVE_S3_FORCE_PATH_STYLE: boolean;
  ARCHIVE_S3_CHECKSUMS: 'when_supported' | 'when_required';
}

/** Parts above this go multipart; 16 MiB × 10,000 parts allows objects up to ~156 GiB. */
const PART_SIZE = 16 * 1024 * 1024;
/** Parts in flight per upload: each is a buffered PART_SIZE, so this bounds memory at ~32 MiB. */
const QUEUE_SIZE = 2;

/** Any S3-compatible endpoint through @aws-sdk/client-s3. */
export class S3ObjectStore implements ObjectStore {
  readonly location: string;
  readonly #client: S3Client;
  readonly #bucket: string;
  /** Ask S3 to verify uploads with SHA-256 (not for servers like s3rver that cannot take checksum trailers). */
  readonly #checksum: { ChecksumAlgorithm?: 'SHA256' };

  constructor(settings: S3StoreSettings) {
    const checksums = settings.ARCHIVE_S3_CHECKSUMS === 'when_supported' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED';
    const keyId = settings.ARCHIVE_S3_ACCESS_KEY_ID;
    const secret = settings.ARCHIVE_S3_SECRET_ACCESS_KEY;
    this.#client = new S3Client({
      region: settings.ARCHIVE_S3_REGION,
      ...(settings.ARCHIVE_S3_ENDPOINT ? { endpoint: settings.ARCHIVE_S3_ENDPOINT } : {}),
      forcePathStyle: settings.ARCHIVE_S3_FORCE_PATH_STYLE,
      // Without both, the SDK's default chain (environment, profile, instance role) applies.
      ...(keyId && secret ? { credentials: { accessKeyId: keyId, secretAccessKey: secret } } : {}),
      requestChecksumCalculation: checksums,
      responseChecksumValidation: checksums,
    });
    this.#bucket = settings.ARCHIVE_S3_BUCKET;
    this.#checksum = checksums === 'WHEN_SUPPORTED' ? { ChecksumAlgorithm: 'SHA256' } : {};
    this.location = `s3://${this.#bucket}`;
  }

  async putFile(key: string, path: string, contentType: string): Promise<StoredObject> {
    const digest = new Sha256Stream();
    const reading = pipeline(createReadStream(path), digest);
    const upload = new Upload({
      client: this.#client,
      params: { Bucket: this.#bucket, Key: key, Body: digest, ContentType: contentType, ...this.#checksum },
      partSize: PART_SIZE,
      queueSize: QUEUE_SIZE,
    });
    // A failed upload stops consuming `digest`; destroying it closes the file too. Both settle
    // before we return, so no aborted multipart upload is still being cleaned up behind the caller.
    const [uploaded, read] = await Promise.allSettled([
      upload.done().catch((err: unknown) => {
        digest.destroy();
        throw err;
      }),
      reading,
    ]);
    // A read error reaches the upload too, so the upload's error is the one that names the cause.
    if (uploaded.status === 'rejected') throw uploaded.reason;
    if (read.status === 'rejected') throw read.reason;
    return digest.result(key);
  }

  async putBytes(key: string, body: Uint8Array, contentType: string): Promise<StoredObject> {
    await this.#client.send(
      new PutObjectCommand({
        Bucket: this.#bucket,
        Key: key,
        Body: body,
        ContentType: contentType,
        ...this.#checksum,
      }),
    );
    return describeBytes(key, body);
  }

  async getFile(key: string, path: string): Promise<StoredObject> {
    const res = await this.#get(key);
    const digest = new Sha256Stream();
    try {
      await pipeline(asReadable(res.Body), digest, createWriteStream(path));
    } catch (err) {
      await rm(path, { force: true }).catch(() => {});
      throw err;
    }
    const read = digest.result(key);
    if (res.ContentLength !== undefined && read.size !== res.ContentLength) {
      await rm(path, { force: true });
      throw new Error(`${key}: read ${read.size} bytes, server announced ${res.ContentLength}`);
    }
    return read;
  }

  async getBytes(key: string): Promise<Uint8Array> {
    const res = await this.#get(key);
    if (!res.Body) throw new Error(`${key}: GetObject returned no body`);
    return res.Body.transformToByteArray();
  }

  async head(key: string): Promise<{ size: number } | undefined> {
    try {
      const res = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: key }));
      return { size: res.ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.#client.send(
        new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    // S3 answers 204 whether or not the key existed.
    await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key }));
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  async #get(key: string) {
    try {
      return await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: key }));
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFoundError(key, { cause: err });
      throw err;
    }
  }
}

/** GetObject answers NoSuchKey; HeadObject has no body to name the error, so it is a bare 404 NotFound. */
function isNotFound(err: unknown): boolean {
  return err instanceof S3ServiceException && (err.name === 'NoSuchKey' || err.name === 'NotFound');
}

/** In Node the SDK's body is a Readable (an IncomingMessage with helper methods mixed in). */
function asReadable(body: unknown): Readable {
  if (body instanceof Readable) return body;
  throw new Error('GetObject returned a body that is not a Node stream');
}
