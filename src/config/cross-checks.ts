import type { Config } from '../config.ts';

/**
 * The first rule between settings that the configuration breaks (each variable is valid on
 * its own), as `VARIABLE: why`; undefined when it breaks none.
 */
export function crossFieldProblem(config: Config): string | undefined {
  if (config.CHECKPOINT_SPILL_THRESHOLD >= config.BUFFER_MAX_EVENTS) {
    return 'CHECKPOINT_SPILL_THRESHOLD: must be below BUFFER_MAX_EVENTS, or ingest answers 429 before workers start spilling to disk';
  }
  if (config.ANONYMIZE_AFTER_DAYS !== undefined && config.ANONYMIZE_SECRET === undefined) {
    return 'ANONYMIZE_SECRET: required when ANONYMIZE_AFTER_DAYS is set (the HMAC key for user ids)';
  }
  if ((config.TLS_CERT_FILE === undefined) !== (config.TLS_KEY_FILE === undefined)) {
    return 'TLS_CERT_FILE, TLS_KEY_FILE: set both or neither';
  }
  if (config.ENCRYPT_METADATA_KEYS.length > 0 && config.METADATA_ENCRYPTION_KEYS === undefined) {
    return 'METADATA_ENCRYPTION_KEYS: required when ENCRYPT_METADATA_KEYS is set (id:base64 of 32 bytes)';
  }
  const { DEFAULT_KEY_RATE_LIMIT: limit, DEFAULT_RATE_LIMIT_PER_MINUTE: former } = config;
  if (limit !== undefined && former !== undefined && limit !== former) {
    return 'DEFAULT_KEY_RATE_LIMIT: DEFAULT_RATE_LIMIT_PER_MINUTE (its former name) is set to another value; unset it';
  }
  if (config.BREAKER_MAX_HALF_OPEN_AFTER_MS < config.BREAKER_HALF_OPEN_AFTER_MS) {
    return 'BREAKER_MAX_HALF_OPEN_AFTER_MS: must not be below BREAKER_HALF_OPEN_AFTER_MS';
  }
  return undefined;
}
