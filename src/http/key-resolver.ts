import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { RedisLike } from '../buffer/redis-client.ts';
import type { ApiKeyInfo, Scope } from '../store/api-keys.repo.ts';
import { hashKey, SCOPES } from '../store/api-keys.repo.ts';

/** Who is calling: a stored key, or the ADMIN_API_KEY bootstrap. */
export interface Principal {
  keyId: string;
  scopes: readonly Scope[];
  rateLimitPerMinute: number | null;
}

export interface KeyResolverOptions {
  /** Looks up an active key by its SHA-256. */
  findByHash: (hash: string) => Promise<ApiKeyInfo | undefined>;
  adminApiKey: string | undefined;
  logger: Logger;
  /** Tells the other API processes about revoked and rotated keys; without it, only the TTL does. */
  invalidations?: KeyInvalidations;
  /** How long a lookup is trusted; a revocation another process missed takes effect within this. */
  ttlMs?: number;
  maxEntries?: number;
  now?: () => number;
}

interface CacheEntry {
  principal: Principal | null;
  fetchedAt: number;
  /** A rotated key stops at its expiry (ms), whatever the cache holds. */
  expiresAt: number | null;
}

/**
 * Resolves API keys to principals with a short-lived cache, so a key costs one database
 * lookup every few seconds per process, not one per request. While the database is
 * unreachable, keys seen before keep working from the cache (ingest must go on).
 */
export class KeyResolver {
  readonly #opts: KeyResolverOptions;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #adminHash: Buffer | undefined;
  readonly #ttlMs: number;
  readonly #now: () => number;
  /** Counts invalidations, so a lookup that raced one is not cached. */
  #generation = 0;

  constructor(opts: KeyResolverOptions) {
    this.#opts = opts;
    this.#adminHash = opts.adminApiKey ? Buffer.from(hashKey(opts.adminApiKey), 'hex') : undefined;
    this.#ttlMs = opts.ttlMs ?? 5_000;
    this.#now = opts.now ?? Date.now;
    opts.invalidations?.subscribe((keyId) => this.#forget(keyId));
  }

  /**
   * @returns the principal, or null for an unknown or revoked key.
   * @throws when the key was never seen and the database cannot be asked.
   */
  async resolve(key: string): Promise<Principal | null> {
    // Only digests are compared or stored: the bootstrap key in constant time, stored keys
    // by looking their SHA-256 up, where timing can reveal digest bytes but not the key.
    const hash = hashKey(key);
    if (this.#adminHash && timingSafeEqual(Buffer.from(hash, 'hex'), this.#adminHash)) {
      return { keyId: 'admin-bootstrap', scopes: SCOPES, rateLimitPerMinute: null };
    }
    const cached = this.#cache.get(hash);
    const now = this.#now();
    if (cached && now - cached.fetchedAt < this.#ttlMs) return unexpired(cached, now);
    const generation = this.#generation;
    try {
      const info = await this.#opts.findByHash(hash);
      const entry: CacheEntry = {
        principal: info
          ? { keyId: info.id, scopes: info.scopes, rateLimitPerMinute: info.rateLimitPerMinute }
          : null,
        fetchedAt: now,
        expiresAt: info?.expiresAt ? Date.parse(info.expiresAt) : null,
      };
      // A key changed while we asked: this answer may predate it, so use it only once.
      if (generation === this.#generation) this.#remember(hash, entry);
      return unexpired(entry, now);
    } catch (err) {
      if (cached) {
        // Not the error itself: a failed query's message carries its parameters (the digest).
        this.#opts.logger.warn({ err: errorCode(err) }, 'key lookup failed; using the cached answer');
        return unexpired(cached, now);
      }
      throw err;
    }
  }

  /**
   * A key was revoked or rotated: forgets it here at once and tells the other API
   * processes (they forget it within milliseconds; failing that, within the TTL).
   */
  async keyChanged(keyId: string): Promise<void> {
    this.#forget(keyId);
    await this.#opts.invalidations?.publish(keyId);
  }

  #forget(keyId: string): void {
    this.#generation++;
    for (const [hash, entry] of this.#cache) {
      if (entry.principal?.keyId === keyId) this.#cache.delete(hash);
    }
  }

  #remember(hash: string, entry: CacheEntry): void {
    this.#cache.delete(hash);
    this.#cache.set(hash, entry);
    // Oldest first: a Map iterates in insertion order.
    const max = this.#opts.maxEntries ?? 10_000;
    while (this.#cache.size > max) {
      const oldest = this.#cache.keys().next().value;
      if (oldest === undefined) break;
      this.#cache.delete(oldest);
    }
  }
}

function unexpired(entry: CacheEntry, now: number): Principal | null {
  return entry.expiresAt !== null && entry.expiresAt <= now ? null : entry.principal;
}

function errorCode(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  const code = (cause as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : cause instanceof Error ? cause.name : 'unknown';
}

export interface KeyInvalidationsOptions {
  /** Publishes (any connection). */
  redis: RedisLike;
  /** A connection of its own: once subscribed it can run nothing else. */
  subscriber: RedisLike;
  /** `keys.keyInvalidations`, under REDIS_PREFIX. */
  channel: string;
  logger: Logger;
}

/**
 * Redis pub/sub of revoked and rotated key ids, so every API process drops its cached
 * answer for the key at once rather than after the cache TTL. A message missed while the
 * subscriber was disconnected is covered by that TTL; ioredis resubscribes on reconnect.
 */
export class KeyInvalidations {
  readonly #opts: KeyInvalidationsOptions;

  constructor(opts: KeyInvalidationsOptions) {
    this.#opts = opts;
  }

  /** Calls `listener` with the id of every key any process reports changed. */
  subscribe(listener: (keyId: string) => void): void {
    const { subscriber, channel, logger } = this.#opts;
    subscriber.on('message', (from: string, keyId: string) => {
      if (from === channel) listener(keyId);
    });
    // On every (re)connect: the subscriber may not queue commands while disconnected.
    const subscribe = () => {
      subscriber.subscribe(channel).catch((err: Error) => {
        logger.warn({ err: err.message }, 'cannot subscribe to key invalidations; relying on the cache TTL');
      });
    };
    subscriber.on('ready', subscribe);
    if (subscriber.status === 'ready') subscribe();
  }

  async publish(keyId: string): Promise<void> {
    try {
      await this.#opts.redis.publish(this.#opts.channel, keyId);
    } catch (err) {
      this.#opts.logger.warn(
        { err: (err as Error).message, keyId },
        'cannot publish a key invalidation; other API processes notice within the cache TTL',
      );
    }
  }
}
