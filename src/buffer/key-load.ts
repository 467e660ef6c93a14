import type { Logger } from 'pino';
import type { BufferKeys } from './keys.ts';
import type { RedisLike } from './redis-client.ts';

/**
 * How many of the buffer's unpersisted events each API key holds, so that one key cannot
 * fill the buffer every key shares (BUFFER_MAX_SHARE_PER_KEY, ARCHITECTURE §11).
 *
 * A Redis hash, key id → count: ingest adds what it accepted (one HINCRBY per request,
 * not awaited), workers subtract what they acknowledge (one HINCRBY per key per batch).
 * API processes read the hash in the buffer monitor's poll, so the check on each request
 * is a map lookup. The counts heal themselves, since nothing here is transactional with
 * the stream: a worker killed between its ack and its HINCRBY leaves a count too high, an
 * entry acknowledged twice (reclaimed) or lost in a Redis restart leaves one off. So a
 * count is read as at most the buffer's total length, never below 0, and the whole hash
 * is reset whenever the buffer is empty: no key stays held back once the buffer drains.
 */
export class KeyLoad {
  readonly #redis: RedisLike;
  readonly #key: string;
  readonly #logger: Logger;
  readonly #maxPerKey: number;
  #counts = new Map<string, number>();
  #total = 0;

  constructor(opts: {
    redis: RedisLike;
    keys: Pick<BufferKeys, 'keyLoad'>;
    logger: Logger;
    /** BUFFER_MAX_EVENTS × BUFFER_MAX_SHARE_PER_KEY. */
    maxPerKey: number;
  }) {
    this.#redis = opts.redis;
    this.#key = opts.keys.keyLoad;
    this.#logger = opts.logger;
    this.#maxPerKey = opts.maxPerKey;
  }

  /** Ingest accepted `n` events of `keyId` into the buffer. Not awaited: a lost count only lets the key through. */
  added(keyId: string, n: number): void {
    if (n <= 0) return;
    // Counted here at once, not at the next poll: a fast key could fill the buffer in between.
    this.#counts.set(keyId, (this.#counts.get(keyId) ?? 0) + n);
    this.#total += n;
    this.#redis.hincrby(this.#key, keyId, n).catch((err: unknown) => {
      this.#logger.debug({ err }, 'key load not counted');
    });
  }

  /** True while `keyId` holds more than its share of the buffer. */
  isOver(keyId: string): boolean {
    const held = Math.min(this.#counts.get(keyId) ?? 0, this.#total);
    return held > this.#maxPerKey;
  }

  /** Every key's count as last read (clamped), for the gauge. */
  snapshot(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [keyId, n] of this.#counts) out.set(keyId, Math.max(0, Math.min(n, this.#total)));
    return out;
  }

  /** Re-reads the counts; `total` is the buffer's length just read. Resets them when it is 0. */
  async refresh(total: number): Promise<void> {
    this.#total = total;
    if (total === 0) {
      if (this.#counts.size > 0) await this.#redis.del(this.#key);
      this.#counts = new Map();
      return;
    }
    const raw = (await this.#redis.hgetall(this.#key)) as Record<string, string>;
    const counts = new Map<string, number>();
    for (const [keyId, n] of Object.entries(raw)) counts.set(keyId, Math.max(0, Number(n)));
    this.#counts = counts;
  }
}

/** The `"keyId":"…"` of an event's JSON, as parseEvent writes it; undefined without one. */
export function keyIdOf(eventJson: string): string | undefined {
  const at = eventJson.indexOf('"keyId":"');
  if (at === -1) return undefined;
  const start = at + 9;
  const end = eventJson.indexOf('"', start);
  return end === -1 ? undefined : eventJson.slice(start, end);
}

/**
 * Workers: lowers each key's count by the events of `entries` just acknowledged (one
 * HINCRBY per key). Errors are logged and dropped: the counts heal (see KeyLoad).
 */
export async function subtractAcknowledged(
  redis: RedisLike,
  keys: Pick<BufferKeys, 'keyLoad'>,
  entries: readonly { event?: string | undefined }[],
  logger: Logger,
): Promise<void> {
  const perKey = new Map<string, number>();
  for (const e of entries) {
    const keyId = e.event ? keyIdOf(e.event) : undefined;
    if (keyId) perKey.set(keyId, (perKey.get(keyId) ?? 0) + 1);
  }
  await Promise.all(
    [...perKey].map(([keyId, n]) =>
      redis.hincrby(keys.keyLoad, keyId, -n).catch((err: unknown) => {
        logger.debug({ err }, 'key load not lowered');
      }),
    ),
  );
}
