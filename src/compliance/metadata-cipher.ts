import {
  createCipheriv,
  createDecipheriv,
  createSecretKey,
  type KeyObject,
  randomFillSync,
} from 'node:crypto';
import { type Config, ConfigError } from '../config.ts';
import type { NormalisedEvent } from '../events/event.schema.ts';
import type { Metrics } from '../telemetry/metrics.ts';

/**
 * Encryption at rest of chosen top-level metadata keys.
 *
 * A value is stored as the string `enc:v1:<keyId>:<base64url(iv | ciphertext | tag)>`:
 * AES-256-GCM over the value's JSON text, a random 12-byte IV per value, the metadata key
 * name as additional authenticated data (a ciphertext moved to another key does not open).
 * Being a string, it stays valid JSON in Redis, jsonb, Parquet and the checkpoint.
 *
 * A value that cannot be opened (its key id is not configured, it was altered, or it was
 * moved) is read as {@link UnreadableValue} and counted in
 * `tributary_metadata_decrypt_failures_total`; a read never fails because of it.
 */

const PREFIX = 'enc:v1:';
const ALGORITHM = 'aes-256-gcm';
const IV_BYTES = 12;
/** IVs drawn per call to the CSPRNG: randomBytes(12) for each value made sealing a third slower. */
const IV_POOL_VALUES = 256;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

export interface MetadataKey {
  id: string;
  key: KeyObject;
}

/** What a process needs to encrypt and decrypt: the keys (the first encrypts) and the metadata keys to encrypt. */
export interface MetadataEncryption {
  keys: readonly MetadataKey[];
  fields: readonly string[];
}

/** Why a stored value could not be opened. */
export type DecryptFailure = 'unknown_key' | 'bad_tag' | 'malformed';

/** Read in place of a value that could not be decrypted. */
export interface UnreadableValue {
  encrypted: true;
  keyId: string | null;
  reason: DecryptFailure;
}

const configError = (message: string) =>
  new ConfigError(`invalid configuration:\n  METADATA_ENCRYPTION_KEYS: ${message}`);

/**
 * Parses `id:base64-of-32-bytes,…` (standard or URL-safe base64, as `openssl rand -base64 32`
 * prints). Messages name the entry by position and id, never the key material.
 * @throws ConfigError on an empty list, a bad id, a repeated id or a key that is not 32 bytes.
 */
export function parseMetadataKeys(raw: string): MetadataKey[] {
  const entries = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (entries.length === 0) throw configError('no key given (id:base64 of 32 bytes)');
  const keys: MetadataKey[] = [];
  entries.forEach((entry, i) => {
    const colon = entry.indexOf(':');
    if (colon < 0) throw configError(`entry ${i + 1} is not id:base64`);
    const id = entry.slice(0, colon);
    const material = entry.slice(colon + 1);
    const where = `entry ${i + 1}${KEY_ID.test(id) ? ` ("${id}")` : ''}`;
    if (!KEY_ID.test(id)) throw configError(`${where}: the id must be 1–32 of [A-Za-z0-9_-]`);
    if (keys.some((k) => k.id === id)) throw configError(`${where}: the id is used twice`);
    const bytes = BASE64.test(material) ? Buffer.from(material, 'base64') : undefined;
    if (bytes?.length !== KEY_BYTES) {
      throw configError(`${where}: the key must be base64 of exactly 32 bytes (openssl rand -base64 32)`);
    }
    keys.push({ id, key: createSecretKey(bytes) });
  });
  return keys;
}

/**
 * The encryption settings of a process, parsed once at start; undefined when
 * METADATA_ENCRYPTION_KEYS is unset (then nothing is encrypted or decrypted).
 * @throws ConfigError as {@link parseMetadataKeys}.
 */
export function parseMetadataEncryption(
  config: Pick<Config, 'ENCRYPT_METADATA_KEYS' | 'METADATA_ENCRYPTION_KEYS'>,
): MetadataEncryption | undefined {
  if (config.METADATA_ENCRYPTION_KEYS === undefined) return undefined;
  return {
    keys: parseMetadataKeys(config.METADATA_ENCRYPTION_KEYS),
    fields: [...new Set(config.ENCRYPT_METADATA_KEYS)],
  };
}

export interface MetadataCipherOptions extends MetadataEncryption {
  metrics?: Pick<Metrics, 'metadataDecryptFailures'>;
}

/** Seals the configured metadata keys at ingest and opens any sealed value on reads. */
export class MetadataCipher {
  /** Whether ingest has anything to do: false when no metadata key is configured. */
  readonly encrypting: boolean;
  readonly #fields: readonly string[];
  readonly #current: MetadataKey;
  readonly #byId: ReadonlyMap<string, KeyObject>;
  readonly #onFailure: (reason: DecryptFailure) => void;
  readonly #ivPool = Buffer.alloc(IV_BYTES * IV_POOL_VALUES);
  #ivOffset = this.#ivPool.length;

  constructor(opts: MetadataCipherOptions) {
    const [current] = opts.keys;
    if (!current) throw new ConfigError('invalid configuration:\n  METADATA_ENCRYPTION_KEYS: no key given');
    this.#current = current;
    this.#byId = new Map(opts.keys.map((k) => [k.id, k.key]));
    this.#fields = opts.fields;
    this.encrypting = opts.fields.length > 0;
    const counter = opts.metrics?.metadataDecryptFailures;
    this.#onFailure = counter ? (reason) => counter.inc({ reason }) : () => {};
  }

  /**
   * The event with its configured metadata keys encrypted under the first key, and its JSON
   * text re-serialised; the very same item when it holds none of them.
   */
  sealEvent<T extends { event: NormalisedEvent; json: string }>(item: T): T {
    const metadata = item.event.metadata;
    if (!metadata) return item;
    let sealed: Record<string, unknown> | undefined;
    for (const field of this.#fields) {
      if (!Object.hasOwn(metadata, field)) continue;
      sealed ??= { ...metadata };
      sealed[field] = this.seal(field, metadata[field]);
    }
    if (!sealed) return item;
    const event = { ...item.event, metadata: sealed };
    return { ...item, event, json: JSON.stringify(event) };
  }

  /** `enc:v1:…` text of one value (any JSON) stored under metadata key `field`. */
  seal(field: string, value: unknown): string {
    const iv = this.#nextIv();
    const cipher = createCipheriv(ALGORITHM, this.#current.key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(field, 'utf8'));
    const body = Buffer.concat([
      iv,
      cipher.update(JSON.stringify(value) ?? 'null', 'utf8'),
      cipher.final(),
      cipher.getAuthTag(),
    ]);
    return `${PREFIX}${this.#current.id}:${body.toString('base64url')}`;
  }

  /**
   * Metadata with every top-level `enc:v1:` string opened, whatever keys are configured now
   * (so values stay readable after a key leaves ENCRYPT_METADATA_KEYS); the same object when
   * none is sealed. Anything that is not a plain object is returned as it is.
   */
  open<M>(metadata: M): M {
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) return metadata;
    const source = metadata as Record<string, unknown>;
    let opened: Record<string, unknown> | undefined;
    for (const field of Object.keys(source)) {
      const value = source[field];
      if (typeof value !== 'string' || !value.startsWith(PREFIX)) continue;
      opened ??= { ...source };
      opened[field] = this.openValue(field, value);
    }
    return (opened ?? metadata) as M;
  }

  /** The value sealed in `text` under metadata key `field`, or an {@link UnreadableValue}. */
  openValue(field: string, text: string): unknown {
    const rest = text.slice(PREFIX.length);
    const colon = rest.indexOf(':');
    const keyId = colon < 0 ? undefined : rest.slice(0, colon);
    if (keyId === undefined || !KEY_ID.test(keyId)) return this.#fail(null, 'malformed');
    const key = this.#byId.get(keyId);
    if (!key) return this.#fail(keyId, 'unknown_key');
    const body = Buffer.from(rest.slice(colon + 1), 'base64url');
    if (body.length < IV_BYTES + TAG_BYTES) return this.#fail(keyId, 'malformed');
    try {
      const decipher = createDecipheriv(ALGORITHM, key, body.subarray(0, IV_BYTES), {
        authTagLength: TAG_BYTES,
      });
      decipher.setAAD(Buffer.from(field, 'utf8'));
      decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
      const plain = Buffer.concat([
        decipher.update(body.subarray(IV_BYTES, body.length - TAG_BYTES)),
        decipher.final(),
      ]);
      return JSON.parse(plain.toString('utf8')) as unknown;
    } catch {
      return this.#fail(keyId, 'bad_tag');
    }
  }

  /** A fresh random IV (each slice of the pool is handed out once, then the pool is refilled). */
  #nextIv(): Buffer {
    if (this.#ivOffset >= this.#ivPool.length) {
      randomFillSync(this.#ivPool);
      this.#ivOffset = 0;
    }
    const iv = this.#ivPool.subarray(this.#ivOffset, this.#ivOffset + IV_BYTES);
    this.#ivOffset += IV_BYTES;
    return iv;
  }

  #fail(keyId: string | null, reason: DecryptFailure): UnreadableValue {
    this.#onFailure(reason);
    return { encrypted: true, keyId, reason };
  }
}

/** Whether a serialised row may hold a sealed value (a cheap test before parsing it). */
export function mayHoldSealedValue(json: string): boolean {
  return json.includes(`"${PREFIX}`);
}
