import { readFileSync } from 'node:fs';
import type { Context, MiddlewareHandler } from 'hono';
import type { Logger } from 'pino';
import type { BufferKeys } from '../../buffer/keys.ts';
import type { RedisLike } from '../../buffer/redis-client.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, errorResponse } from '../errors.ts';
import { INGEST_PATHS } from '../segment-body.ts';

const MINUTE_MS = 60_000;

/** A client with the rate-limit script registered: `[allowed, remaining, retryAfterMs, resetMs]` (rate-limit.lua). */
export type RateLimitRedis = RedisLike & {
  tributaryRateLimit(
    bucket: string,
    limit: number,
    periodMs: number,
    nowMs: number | '',
    cost: number,
  ): Promise<[number, number, number, number]>;
};

/**
 * Registers rate-limit.lua on the client as `tributaryRateLimit` (EVALSHA with automatic
 * fallback to EVAL). Idempotent. One key, so a cluster's automatic pipelining routes it
 * by that key (unlike the buffer's variable-key scripts, see VARIABLE_KEY_SCRIPTS).
 */
export function registerRateLimitScript(redis: RedisLike): RateLimitRedis {
  const r = redis as RateLimitRedis;
  if (typeof r.tributaryRateLimit !== 'function') {
    const lua = readFileSync(new URL('./rate-limit.lua', import.meta.url), 'utf8');
    redis.defineCommand('tributaryRateLimit', { numberOfKeys: 1, lua });
  }
  return r;
}

/** The outcome of counting one request against a key's limit. */
export interface RateLimitDecision {
  allowed: boolean;
  /** Requests per minute (also the burst). */
  limit: number;
  /** Requests still allowed right now. */
  remaining: number;
  /** Seconds until the full limit is available again. */
  resetS: number;
  /** Seconds until a refused request would be allowed (at least 1). */
  retryAfterS: number;
}

export interface RateLimiter {
  /**
   * Spends `cost` (1 per request; an ingest request's events) of `keyId`'s allowance;
   * undefined when that cannot be done now (the request goes through).
   */
  consume(keyId: string, perMinute: number, cost?: number): Promise<RateLimitDecision | undefined>;
}

export interface RedisRateLimiterOptions {
  /** The shared client (auto-pipelined): one EVALSHA per request, no lock. */
  redis: RedisLike;
  keys: Pick<BufferKeys, 'rateLimit'>;
  logger: Logger;
  /** Longest wait for Redis before a request goes through uncounted. */
  timeoutMs?: number;
  /** The clock in ms; by default Redis's own (one clock for every API node). For tests. */
  now?: () => number;
}

/** A key refused until `until` (ms, local clock): no request of it can pass before then. */
interface Refusal {
  perMinute: number;
  /** The cost refused: a smaller one may pass earlier, so only as large a cost is refused here. */
  cost: number;
  until: number;
  fullAt: number;
}

const MAX_REFUSALS = 10_000;

function toDecision(
  perMinute: number,
  allowed: boolean,
  remaining: number,
  retryAfterMs: number,
  resetMs: number,
): RateLimitDecision {
  return {
    allowed,
    limit: perMinute,
    remaining,
    resetS: Math.ceil(resetMs / 1_000),
    retryAfterS: Math.max(1, Math.ceil(retryAfterMs / 1_000)),
  };
}

/**
 * A token bucket per key in Redis (rate-limit.lua). Fails open: while Redis is
 * unreachable or slow, requests go through uncounted, so reads keep working (ingest
 * fails on its own without Redis).
 *
 * A refused key is refused here, without Redis, until the moment Redis named for its next
 * token: no node can get a token earlier, so the answer is the same, and a flooding key
 * costs Redis (shared by every key) one call per token instead of one per request.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly #opts: RedisRateLimiterOptions;
  readonly #redis: RateLimitRedis;
  readonly #refused = new Map<string, Refusal>();
  readonly #clock: () => number;

  constructor(opts: RedisRateLimiterOptions) {
    this.#opts = opts;
    this.#redis = registerRateLimitScript(opts.redis);
    this.#clock = opts.now ?? Date.now;
  }

  async consume(keyId: string, perMinute: number, cost = 1): Promise<RateLimitDecision | undefined> {
    const refusal = this.#refused.get(keyId);
    if (refusal) {
      const now = this.#clock();
      if (refusal.perMinute === perMinute && cost >= refusal.cost && now < refusal.until) {
        return toDecision(perMinute, false, 0, refusal.until - now, refusal.fullAt - now);
      }
      this.#refused.delete(keyId);
    }
    const reply = await this.#ask(keyId, perMinute, cost);
    if (!reply) return undefined;
    const [allowed, remaining, retryAfterMs, resetMs] = reply;
    if (allowed !== 1) this.#remember(keyId, perMinute, cost, retryAfterMs, resetMs);
    return toDecision(perMinute, allowed === 1, remaining, retryAfterMs, resetMs);
  }

  /** One EVALSHA, or undefined (logged at debug) when Redis cannot answer in time. */
  async #ask(
    keyId: string,
    perMinute: number,
    cost: number,
  ): Promise<[number, number, number, number] | undefined> {
    const { keys, logger, now } = this.#opts;
    // A disconnected client fails at once (no offline queue); skipping it saves building the call.
    if (this.#redis.status !== 'ready') {
      logger.debug({ keyId }, 'rate limit skipped: Redis not connected');
      return undefined;
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      const reply = await Promise.race([
        this.#redis.tributaryRateLimit(keys.rateLimit(keyId), perMinute, MINUTE_MS, now?.() ?? '', cost),
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), this.#opts.timeoutMs ?? 250);
        }),
      ]);
      if (!reply) logger.debug({ keyId }, 'rate limit skipped: Redis too slow');
      return reply;
    } catch (err) {
      logger.debug({ keyId, err: (err as Error).message }, 'rate limit skipped: Redis error');
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  #remember(keyId: string, perMinute: number, cost: number, retryAfterMs: number, resetMs: number): void {
    // Counted from when the answer arrived: later than Redis's now, so never too early.
    const now = this.#clock();
    if (this.#refused.size >= MAX_REFUSALS) {
      for (const [id, r] of this.#refused) if (r.until <= now) this.#refused.delete(id);
      if (this.#refused.size >= MAX_REFUSALS) return;
    }
    this.#refused.set(keyId, { perMinute, cost, until: now + retryAfterMs, fullAt: now + resetMs });
  }
}

function headersOf(d: RateLimitDecision): [string, string][] {
  return [
    ['RateLimit-Limit', String(d.limit)],
    ['RateLimit-Remaining', String(d.remaining)],
    ['RateLimit-Reset', String(d.resetS)],
  ];
}

export interface RateLimitOptions {
  /** Absent: nothing is limited. */
  limiter: RateLimiter | undefined;
  /** For stored keys without a limit of their own (DEFAULT_KEY_RATE_LIMIT); undefined: those are unlimited. */
  defaultPerMinute: number | undefined;
}

/** The bootstrap ADMIN_API_KEY: an operator's key, never limited. */
const BOOTSTRAP_KEY_ID = 'admin-bootstrap';

function rateLimited(d: RateLimitDecision, unit: string): ApiError {
  return new ApiError(
    'rate_limited',
    429,
    `this key is over its limit of ${d.limit} ${unit} per minute; retry in ${d.retryAfterS} s`,
    { retryAfter: d.retryAfterS },
  );
}

/**
 * Counts the request against its key's limit (after `authenticate`): over it, `429
 * rate_limited` with `Retry-After`; every response of a limited key carries the
 * `RateLimit-Limit`, `-Remaining` and `-Reset` headers. Unlimited keys cost no Redis call.
 * On the ingest routes the limit counts events: the route spends them once it has read the
 * body (`spendEvents`), so a batch of 100 spends 100.
 */
export function rateLimit(opts: RateLimitOptions): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const principal = c.get('principal');
    const perMinute =
      principal?.rateLimitPerMinute ??
      (principal?.keyId === BOOTSTRAP_KEY_ID ? undefined : opts.defaultPerMinute);
    const limiter = opts.limiter;
    if (!limiter || !principal || perMinute === undefined) return next();
    // On Node's response the headers survive whatever response the route builds (errors,
    // streams); under `app.request()` they go on the Hono response instead.
    const outgoing = c.env?.outgoing;
    const setHeaders = (d: RateLimitDecision) => {
      for (const [name, value] of headersOf(d)) {
        if (outgoing) outgoing.setHeader(name, value);
        else c.header(name, value);
      }
    };
    if (c.req.method === 'POST' && INGEST_PATHS.has(c.req.path)) {
      c.set('spendEvents', async (n: number) => {
        if (n > perMinute) {
          // Never allowed, however long the client waits: a 429 would have SDKs retry it
          // forever, so this is the batch's own fault, like any other oversized batch.
          throw new ApiError(
            'batch_too_large',
            413,
            `this key may send at most ${perMinute} events a minute and the request holds ${n}; send smaller batches`,
          );
        }
        const decision = await limiter.consume(principal.keyId, perMinute, n);
        if (!decision) return;
        setHeaders(decision);
        if (!decision.allowed) throw rateLimited(decision, 'events');
      });
      return next();
    }
    const decision = await limiter.consume(principal.keyId, perMinute);
    if (!decision) return next();
    if (!decision.allowed) {
      for (const [name, value] of headersOf(decision)) c.header(name, value);
      return errorResponse(c, rateLimited(decision, 'requests'));
    }
    if (outgoing) setHeaders(decision);
    await next();
    if (!outgoing) setHeaders(decision);
  };
}

/** Spends `n` events of the caller's limit (ingest routes, once the body is read); throws its 429 or 413. */
export async function spendEvents(c: Context<AppEnv>, n: number): Promise<void> {
  await c.get('spendEvents')?.(n);
}
