/** The consumer group every worker joins. */
export const CONSUMER_GROUP = 'writers';

/** Version of the stream entry format (`v` field). */
export const ENTRY_FORMAT_VERSION = '1';

/**
 * Every Redis key and pub/sub channel name Tributary uses: nothing else builds one from the
 * prefix (test/unit/buffer.test.ts checks). Partition keys carry `{p}` hash tags for Redis
 * Cluster; every other key is used alone in a command, script or MULTI.
 */
export interface BufferKeys {
  /** REDIS_PREFIX, for logs and tests: never build a key from it outside this file. */
  readonly prefix: string;
  readonly partitions: number;
  /** `PREFIX:events:{p}` — the buffer stream of partition p. */
  stream(partition: number): string;
  /** All partition streams, index = partition. */
  readonly streams: readonly string[];
  /** `PREFIX:dedupe:{p}:BUCKET` — ids accepted into partition p during one time bucket. */
  dedupe(partition: number, bucket: number): string;
  /** `PREFIX:dead` — the dead-letter stream. */
  readonly deadLetter: string;
  /**
   * `PREFIX:keyload` — hash: API key id → its events in the buffer, raised at ingest and
   * lowered when workers acknowledge (buffer/key-load.ts). Used alone, no hash tag needed.
   */
  readonly keyLoad: string;
  /** `PREFIX:workers` — hash: consumer name → JSON status (breaker, checkpoint), refreshed by each worker. */
  readonly workers: string;
  /** `PREFIX:ratelimit:{keyId}` — the rate-limit bucket of one API key (http/middleware/rate-limit.lua). */
  rateLimit(keyId: string): string;
  /**
   * `PREFIX:authfail:ADDRESS` — the failed-authentication bucket of one client address
   * (rate-limit.lua, http/auth-throttle.ts). Used alone, so it needs no hash tag.
   */
  authFailures(address: string): string;
  /** `PREFIX:api-keys:invalidate` — pub/sub channel: the id of a key revoked or rotated. */
  readonly keyInvalidations: string;
  /**
   * `PREFIX:plans` — pub/sub channel: a tracking plan changed (its service as the message);
   * every API process reloads its plans (http/plan-registry.ts).
   */
  readonly planChanges: string;
  /** `PREFIX:subjects` — pub/sub channel: opt-outs, opt-ins and erasures, as JSON (compliance/subjects.ts). */
  readonly subjects: string;
  /**
   * `PREFIX:dsar:REQUEST:dropped` — hash: events of one erasure request that workers dropped,
   * field `buffer` / `checkpoint` → count, and the request's dead letters deleted, field
   * `deadLetter`. Used alone on a cluster (with the dead-letter stream in one script on a
   * single server only), so it needs no hash tag.
   */
  dsarDropped(requestId: string): string;
  /**
   * `PREFIX:live` — stream: the live view's outcome records, one entry per flush of an API
   * process (live/publisher.ts), trimmed to LIVE_RETAIN_ENTRIES. Used alone.
   */
  readonly live: string;
  /**
   * `PREFIX:live:listeners` — sorted set: one member per open live-view connection, scored by
   * when it expires unless refreshed (live/presence.ts). Used alone.
   */
  readonly liveListeners: string;
}

export function bufferKeys(prefix: string, partitions: number): BufferKeys {
  const stream = (p: number) => `${prefix}:events:{${p}}`;
  return {
    prefix,
    partitions,
    stream,
    streams: Array.from({ length: partitions }, (_, p) => stream(p)),
    dedupe: (p, bucket) => `${prefix}:dedupe:{${p}}:${bucket}`,
    deadLetter: `${prefix}:dead`,
    keyLoad: `${prefix}:keyload`,
    workers: `${prefix}:workers`,
    rateLimit: (keyId) => `${prefix}:ratelimit:{${keyId}}`,
    authFailures: (address) => `${prefix}:authfail:${address}`,
    keyInvalidations: `${prefix}:api-keys:invalidate`,
    planChanges: `${prefix}:plans`,
    subjects: `${prefix}:subjects`,
    dsarDropped: (requestId) => `${prefix}:dsar:${requestId}:dropped`,
    live: `${prefix}:live`,
    liveListeners: `${prefix}:live:listeners`,
  };
}

/** Partition number of a stream key produced by {@link bufferKeys}, or -1. */
export function partitionOfStream(key: string): number {
  const match = /:events:\{(\d+)\}$/.exec(key);
  return match?.[1] ? Number(match[1]) : -1;
}
