import type { Logger } from 'pino';
import type { BufferKeys } from '../buffer/keys.ts';
import type { RedisLike } from '../buffer/redis-client.ts';
import {
  askBucket,
  type RateLimitRedis,
  type RateLimitReply,
  registerRateLimitScript,
} from './middleware/rate-limit.ts';

const MINUTE_MS = 60_000;
/** Addresses remembered as refused per process; past it, refusals are decided by Redis alone. */
const MAX_REFUSED = 10_000;

/** Refuses failed authentications; see {@link FailedAuthThrottle}. */
export interface AuthThrottle {
  /** Seconds `address` must still wait, when this process knows it is over its allowance; no I/O. */
  refusedFor(address: string): number | undefined;
  /**
   * Counts one failed authentication from `address`. Returns the seconds to wait when this
   * failure was already over the allowance (the caller answers 429), undefined otherwise
   * or when it cannot be counted now.
   */
  failed(address: string): Promise<number | undefined>;
}

export interface FailedAuthThrottleOptions {
  /** The shared client: one EVALSHA per failed authentication, none per success. */
  redis: RedisLike;
  keys: Pick<BufferKeys, 'authFailures'>;
  /** AUTH_FAILURES_PER_MINUTE: also the burst. */
  perMinute: number;
  logger: Logger;
  /** Longest wait for Redis before a failure goes uncounted. */
  timeoutMs?: number;
  /** The local clock (ms), for how long a refusal is remembered. For tests. */
  now?: () => number;
}

/**
 * A token bucket of failed authentications per client address (the rate-limit script,
 * under its own key prefix, so every API process shares one count): `perMinute` failures
 * at once, then one more every 60/perMinute seconds. Once an address has spent its
 * allowance, this process refuses its attempts locally until a token returns, with no
 * lookup and no Redis call; another process refuses it from its first failure there.
 * Fails open: without Redis, failures are not counted (and nothing is refused).
 */
export class FailedAuthThrottle implements AuthThrottle {
  readonly #o: FailedAuthThrottleOptions;
  readonly #redis: RateLimitRedis;
  readonly #clock: () => number;
  /** Address → when (local ms) its next failure would be allowed. */
  readonly #refused = new Map<string, number>();

  constructor(opts: FailedAuthThrottleOptions) {
    this.#o = opts;
    this.#redis = registerRateLimitScript(opts.redis);
    this.#clock = opts.now ?? Date.now;
  }

  refusedFor(address: string): number | undefined {
    const until = this.#refused.get(address);
    if (until === undefined) return undefined;
    const wait = until - this.#clock();
    if (wait > 0) return Math.max(1, Math.ceil(wait / 1_000));
    this.#refused.delete(address);
    return undefined;
  }

  async failed(address: string): Promise<number | undefined> {
    const reply = await this.#ask(address);
    if (!reply) return undefined;
    const [allowed, remaining, retryAfterMs, resetMs] = reply;
    if (allowed !== 1) {
      this.#remember(address, retryAfterMs);
      return Math.max(1, Math.ceil(retryAfterMs / 1_000));
    }
    // That was the last failure allowed for now: refuse the next one here without asking.
    // The bucket is full again in resetMs; the next token comes one interval after it
    // last was (rate-limit.lua keeps the time the bucket is full).
    if (remaining === 0) this.#remember(address, resetMs - MINUTE_MS + MINUTE_MS / this.#o.perMinute);
    return undefined;
  }

  #ask(address: string): Promise<RateLimitReply | undefined> {
    const { keys, logger, perMinute } = this.#o;
    return askBucket(
      this.#redis,
      [keys.authFailures(address), perMinute, MINUTE_MS, '', 1],
      this.#o.timeoutMs ?? 250,
      (why) => logger.debug(`failed authentication not counted: ${why}`),
    );
  }

  #remember(address: string, waitMs: number): void {
    if (waitMs <= 0) return;
    const now = this.#clock();
    if (this.#refused.size >= MAX_REFUSED) {
      for (const [a, until] of this.#refused) if (until <= now) this.#refused.delete(a);
      if (this.#refused.size >= MAX_REFUSED) return;
    }
    this.#refused.set(address, now + waitMs);
  }
}
