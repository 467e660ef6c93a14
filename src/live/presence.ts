import type { Logger } from 'pino';
import type { RedisLike } from '../buffer/redis-client.ts';

export interface LivePresenceOptions {
  redis: RedisLike;
  /** The sorted set of listeners (`keys.liveListeners`). */
  key: string;
  logger: Logger;
  /** How often every API process looks for listeners. */
  pollMs?: number;
  /** A listener not refreshed for this long no longer counts (its process died). */
  ttlMs?: number;
  /** How often a process refreshes its own listeners. */
  refreshMs?: number;
}

/**
 * Whether anyone, on any API process, has the live view open: `active`. Each open
 * connection is a member of one sorted set scored by its expiry, refreshed while it is open
 * and removed when it closes; every process counts the unexpired members on a short timer
 * (one ZCOUNT per `pollMs`). Ingest reads `active` (a boolean) and publishes nothing while
 * it is false.
 */
export class LivePresence {
  readonly #opts: Required<LivePresenceOptions>;
  readonly #members = new Set<string>();
  #remote = false;
  #polling = false;
  #poll: NodeJS.Timeout | undefined;
  #refresh: NodeJS.Timeout | undefined;

  constructor(opts: LivePresenceOptions) {
    this.#opts = { pollMs: 250, ttlMs: 10_000, refreshMs: 3_000, ...opts };
  }

  /** Someone listens: on this process (known at once) or another one (within `pollMs`). */
  get active(): boolean {
    return this.#remote || this.#members.size > 0;
  }

  start(): void {
    this.#poll ??= setInterval(() => void this.#count(), this.#opts.pollMs).unref();
  }

  /** Adds a listener of this process; it counts for every process from the next poll. */
  register(member: string): void {
    this.#members.add(member);
    void this.#write([member]);
    this.#refresh ??= setInterval(() => void this.#write([...this.#members]), this.#opts.refreshMs).unref();
  }

  unregister(member: string): void {
    if (!this.#members.delete(member)) return;
    this.#opts.redis.zrem(this.#opts.key, member).catch(() => {});
    if (this.#members.size === 0) {
      clearInterval(this.#refresh);
      this.#refresh = undefined;
    }
  }

  stop(): void {
    clearInterval(this.#poll);
    clearInterval(this.#refresh);
    this.#poll = undefined;
    this.#refresh = undefined;
    for (const member of [...this.#members]) this.unregister(member);
  }

  /** Refreshes `members` and drops expired ones; the set itself goes when nobody refreshes it. */
  async #write(members: string[]): Promise<void> {
    if (members.length === 0) return;
    const { redis, key, ttlMs, logger } = this.#opts;
    const now = Date.now();
    const expiry = now + ttlMs;
    try {
      await Promise.all([
        redis.zadd(key, ...members.flatMap((m) => [expiry, m])),
        redis.zremrangebyscore(key, '-inf', `(${now}`),
        redis.pexpire(key, ttlMs * 2),
      ]);
    } catch (err) {
      logger.debug({ err }, 'live view: registering listeners failed');
    }
  }

  async #count(): Promise<void> {
    const { redis, key } = this.#opts;
    if (this.#polling || redis.status !== 'ready') return;
    this.#polling = true;
    try {
      this.#remote = (await redis.zcount(key, Date.now(), '+inf')) > 0;
    } catch {
      // Keep the last answer: with Redis away, publishing fails (and is counted) anyway.
    } finally {
      this.#polling = false;
    }
  }
}
