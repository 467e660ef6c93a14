import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { RedisLike } from '../buffer/redis-client.ts';
import type { ApiKeyInfo, Scope } from '../store/api-keys.repo.ts';
import { hashKey, SCOPES } from '../store/api-keys.repo.ts';
import type { AuthThrottle } from './auth-throttle.ts';
import { ApiError } from './errors.ts';

/** Who is calling: a stored key, or the ADMIN_API_KEY bootstrap. */
export interface Principal {
  keyId: string;
  /** The key's name (`ADMIN_API_KEY` for the bootstrap key); absent where a principal is made by hand. */
  name?: string;
  scopes: readonly Scope[];
  rateLimitPerMinute: number | null;
  /** Services it may write and read; null: every service. */
  services: readonly string[] | null;
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
  /**
   * Whether a presented key can be a stored one (`isStoredKeyShape`); one that cannot is
   * refused with no lookup. Absent: every key is looked up.
   */
  storedKeyShape?: (key: string) => boolean;
  /**
   * How long a key found unknown stays unknown without a lookup. Creating a key clears every
   * process's unknown keys at once (`keyChanged`); this bounds a missed message.
   */
  negativeTtlMs?: number;
  /** Unknown keys remembered at most (oldest forgotten first), so a flood of them costs bounded memory. */
  maxNegativeEntries?: number;
  /** Failed authentications per client address; absent, none are throttled. */
  throttle?: AuthThrottle | undefined;
  now?: () => number;
}

interface CacheEntry {
  principal: Principal;
  fetchedAt: number;
  /** A rotated key stops at its expiry (ms), whatever the cache holds. */
  expiresAt: number | null;
}

/**
 * Resolves API keys to principals with a short-lived cache, so a key costs one database
 * lookup every few seconds per process, not one per request. While the database is
 * unreachable, keys seen before keep working from the cache (ingest must go on).
 *
 * What cannot be a key costs nothing: a key of the wrong shape is refused with no lookup,
 * an unknown one is remembered as unknown (a bounded map of its own, so a flood of them
 * never pushes valid keys out of the cache), and concurrent lookups of one key share one
 * query. With a `throttle`, an address that failed too often is answered `429
 * auth_throttled` for any key this process has not accepted recently, with no lookup.
 */
export class KeyResolver {
  readonly #opts: KeyResolverOptions;
  /** Keys found, by digest. */
  readonly #cache = new Map<string, CacheEntry>();
  /** Keys found unknown, by digest → when (ms). */
  readonly #unknown = new Map<string, number>();
  /** Lookups under way, by digest: one query however many requests wait for it. */
  readonly #inFlight = new Map<string, Promise<ApiKeyInfo | undefined>>();
  readonly #adminHash: Buffer | undefined;
  readonly #ttlMs: number;
  readonly #negativeTtlMs: number;
  readonly #now: () => number;
  /** Counts invalidations, so a lookup that raced one is not cached. */
  #generation = 0;

  constructor(opts: KeyResolverOptions) {
    this.#opts = opts;
    this.#adminHash = opts.adminApiKey ? Buffer.from(hashKey(opts.adminApiKey), 'hex') : undefined;
    this.#ttlMs = opts.ttlMs ?? 5_000;
    this.#negativeTtlMs = opts.negativeTtlMs ?? 30_000;
    this.#now = opts.now ?? Date.now;
    opts.invalidations?.subscribe((keyId) => this.#forget(keyId));
  }

  /** Stops listening for invalidations (the process is stopping). */
  close(): void {
    this.#opts.invalidations?.close();
  }

  /**
   * @param address the client's address, for the failed-authentication throttle (none: not throttled).
   * @returns the principal, or null for an unknown, revoked or expired key.
   * @throws ApiError `auth_throttled` (429) when `address` failed too often;
   *   the lookup's error when the key was never seen and the database cannot be asked.
   */
  async resolve(key: string, address?: string | null): Promise<Principal | null> {
    // Only digests are compared or stored: the bootstrap key in constant time, stored keys
    // by looking their SHA-256 up, where timing can reveal digest bytes but not the key.
    const hash = hashKey(key);
    const now = this.#now();
    const cached = this.#cache.get(hash);
    const fresh = cached !== undefined && now - cached.fetchedAt < this.#ttlMs;
    const known = cached ? unexpired(cached, now) : null;
    if (fresh && known) return known;
    // A key accepted here recently is never throttled: a client sharing an address (a NAT,
    // a host) with a failing one keeps working, and its stale answer is refreshed. Every
    // other key is, the bootstrap key included (it may be guessable).
    const wait = !known && address ? this.#opts.throttle?.refusedFor(address) : undefined;
    if (wait) throw authThrottled(wait);
    if (this.#adminHash && timingSafeEqual(Buffer.from(hash, 'hex'), this.#adminHash)) {
      return {
        keyId: 'admin-bootstrap',
        name: 'ADMIN_API_KEY',
        scopes: SCOPES,
        rateLimitPerMinute: null,
        services: null,
      };
    }
    // A rotated key past its expiry, answered from the cache.
    if (fresh) return this.#outcome(null, address);
    if (!cached) {
      const shaped = this.#opts.storedKeyShape?.(key) ?? true;
      const unknownAt = this.#unknown.get(hash);
      if (!shaped || (unknownAt !== undefined && now - unknownAt < this.#negativeTtlMs)) {
        return this.#outcome(null, address);
      }
    }
    const generation = this.#generation;
    try {
      const info = await this.#lookup(hash);
      // A key changed while we asked: this answer may predate it, so use it only once.
      const current = generation === this.#generation;
      if (!info) {
        this.#cache.delete(hash);
        if (current) this.#rememberUnknown(hash, now);
        return this.#outcome(null, address);
      }
      const entry: CacheEntry = {
        principal: {
          keyId: info.id,
          name: info.name,
          scopes: info.scopes,
          rateLimitPerMinute: info.rateLimitPerMinute,
          services: info.services.length > 0 ? info.services : null,
        },
        fetchedAt: now,
        expiresAt: info.expiresAt ? Date.parse(info.expiresAt) : null,
      };
      if (current) this.#remember(hash, entry);
      return this.#outcome(unexpired(entry, now), address);
    } catch (err) {
      if (cached) {
        // Not the error itself: a failed query's message carries its parameters (the digest).
        this.#opts.logger.warn({ err: errorCode(err) }, 'key lookup failed; using the cached answer');
        return this.#outcome(unexpired(cached, now), address);
      }
      throw err;
    }
  }

  /**
   * A key was created, revoked or rotated: forgets it (and every key remembered as
   * unknown, the new one among them) here at once and tells the other API processes (they
   * forget within milliseconds; failing that, within the TTLs).
   */
  async keyChanged(keyId: string): Promise<void> {
    this.#forget(keyId);
    await this.#opts.invalidations?.publish(keyId);
  }

  /** A failure is counted against the address; one over its allowance is a 429. */
  async #outcome(principal: Principal | null, address: string | null | undefined): Promise<Principal | null> {
    if (principal || !address || !this.#opts.throttle) return principal;
    const wait = await this.#opts.throttle.failed(address);
    if (wait) throw authThrottled(wait);
    return null;
  }

  #lookup(hash: string): Promise<ApiKeyInfo | undefined> {
    const running = this.#inFlight.get(hash);
    if (running) return running;
    const lookup = this.#opts.findByHash(hash).finally(() => {
      if (this.#inFlight.get(hash) === lookup) this.#inFlight.delete(hash);
    });
    this.#inFlight.set(hash, lookup);
    return lookup;
  }

  #forget(keyId: string): void {
    this.#generation++;
    // Lookups under way may predate the change: later requests ask again.
    this.#inFlight.clear();
    this.#unknown.clear();
    for (const [hash, entry] of this.#cache) {
      if (entry.principal?.keyId === keyId) this.#cache.delete(hash);
    }
  }

  #rememberUnknown(hash: string, now: number): void {
    this.#unknown.delete(hash);
    this.#unknown.set(hash, now);
    const max = this.#opts.maxNegativeEntries ?? 10_000;
    while (this.#unknown.size > max) {
      const oldest = this.#unknown.keys().next().value;
      if (oldest === undefined) break;
      this.#unknown.delete(oldest);
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

function authThrottled(retryAfter: number): ApiError {
  return new ApiError(
    'auth_throttled',
    429,
    `too many failed authentications from this address; retry in ${retryAfter} s`,
    { retryAfter },
  );
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
  #closed = false;

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
        // Closed on purpose (the process is stopping): nothing is missed.
        if (this.#closed) return;
        logger.warn({ err: err.message }, 'cannot subscribe to key invalidations; relying on the cache TTL');
      });
    };
    subscriber.on('ready', subscribe);
    if (subscriber.status === 'ready') subscribe();
  }

  /**
   * Before the process closes its connections: a subscription that fails from then on (the
   * connection closing as it became ready) is not worth a warning.
   */
  close(): void {
    this.#closed = true;
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

/** Whether `principal` may write and read `service`'s events. */
export function mayUseService(principal: Pick<Principal, 'services'>, service: string): boolean {
  return principal.services === null || principal.services.includes(service);
}
