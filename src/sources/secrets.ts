import type { MetadataCipher } from '../compliance/metadata-cipher.ts';

/**
 * A source's secrets at rest (ARCHITECTURE §15): one `enc:v1:` value (AES-256-GCM under the
 * first of METADATA_ENCRYPTION_KEYS) holding the JSON of every secret field, sealed with the
 * source's id as associated data, so a value copied to another source's row does not open.
 */

/** No METADATA_ENCRYPTION_KEYS: secrets cannot be stored. */
export class SecretsUnavailableError extends Error {
  override readonly name = 'SecretsUnavailableError';
}

/** The stored secrets could not be opened (their key is no longer configured, or they were altered). */
export class SecretsUnreadableError extends Error {
  override readonly name = 'SecretsUnreadableError';
}

const field = (sourceId: string) => `source:${sourceId}`;

export class SourceSecrets {
  readonly #cipher: MetadataCipher | undefined;

  constructor(cipher: MetadataCipher | undefined) {
    this.#cipher = cipher;
  }

  /** Whether secrets can be stored (METADATA_ENCRYPTION_KEYS is set). */
  get available(): boolean {
    return this.#cipher !== undefined;
  }

  /** The sealed text of `secrets`, or null when there are none. */
  seal(sourceId: string, secrets: Record<string, unknown>): string | null {
    if (Object.keys(secrets).length === 0) return null;
    if (!this.#cipher) {
      throw new SecretsUnavailableError(
        'sources keep their connection strings, tokens and secrets encrypted: set METADATA_ENCRYPTION_KEYS first',
      );
    }
    return this.#cipher.seal(field(sourceId), secrets);
  }

  /** The secrets sealed in `text` (none for null). */
  open(sourceId: string, text: string | null): Record<string, unknown> {
    if (text === null) return {};
    if (!this.#cipher) {
      throw new SecretsUnreadableError(
        'METADATA_ENCRYPTION_KEYS is not set: the source’s secrets cannot be read',
      );
    }
    const value = this.#cipher.openValue(field(sourceId), text);
    if (value === null || typeof value !== 'object' || Array.isArray(value) || 'encrypted' in value) {
      throw new SecretsUnreadableError(
        'the source’s secrets cannot be decrypted: the key that sealed them is not in METADATA_ENCRYPTION_KEYS',
      );
    }
    return value as Record<string, unknown>;
  }
}
