import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
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
  /** How long a lookup is trusted; a revocation takes effect within this. */
  ttlMs?: number;
  maxEntries?: number;
  now?: () => number;
}

interface CacheEntry {
  principal: Principal | null;
  fetchedAt: number;
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

  constructor(opts: KeyResolverOptions) {
    this.#opts = opts;
    this.#adminHash = opts.adminApiKey ? Buffer.from(hashKey(opts.adminApiKey), 'hex') : undefined;
    this.#ttlMs = opts.ttlMs ?? 5_000;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * @returns the principal, or null for an unknown or revoked key.
   * @throws when the key was never seen and the database cannot be asked.
   */
  async resolve(key: string): Promise<Principal | null> {
    const hash = hashKey(key);
    // Compared as digests of equal length, in constant time.
    if (this.#adminHash && timingSafeEqual(Buffer.from(hash, 'hex'), this.#adminHash)) {
      return { keyId: 'admin-bootstrap', scopes: SCOPES, rateLimitPerMinute: null };
    }
    const cached = this.#cache.get(hash);
    const now = this.#now();
    if (cached && now - cached.fetchedAt < this.#ttlMs) return cached.principal;
    try {
      const info = await this.#opts.findByHash(hash);
      const principal = info
        ? { keyId: info.id, scopes: info.scopes, rateLimitPerMinute: info.rateLimitPerMinute }
        : null;
      this.#remember(hash, { principal, fetchedAt: now });
      return principal;
    } catch (err) {
      if (cached) {
        this.#opts.logger.warn({ err: String(err) }, 'key lookup failed; using the cached answer');
        return cached.principal;
      }
      throw err;
    }
  }

  /** Forgets every cached answer (after a revocation on this node). */
  clear(): void {
    this.#cache.clear();
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
