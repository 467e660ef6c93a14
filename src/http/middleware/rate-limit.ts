import { readFileSync } from 'node:fs';
import type { Context, MiddlewareHandler } from 'hono';
import type { Logger } from 'pino';
import type { BufferKeys } from '../../buffer/keys.ts';
import type { RedisLike } from '../../buffer/redis-client.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, errorResponse } from '../errors.ts';
import type { Principal } from '../key-resolver.ts';
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
    wanted?: number,
  ): Promise<RateLimitReply>;
};

/** rate-limit.lua's reply: `[allowed, remaining, retryAfterMs, resetMs, taken]`. */
export type RateLimitReply = [number, number, number, number, number];

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

/**
 * One call of rate-limit.lua, or undefined when Redis cannot answer now: not connected, an
 * error, or no reply within `timeoutMs` (`skipped` says which, for a debug line).
 */
export async function askBucket(
  redis: RateLimitRedis,
  args: Parameters<RateLimitRedis['tributaryRateLimit']>,
  timeoutMs: number,
  skipped: (why: string) => void,
): Promise<RateLimitReply | undefined> {
  // A disconnected client fails at once (no offline queue); skipping it saves building the call.
  if (redis.status !== 'ready') {
    skipped('Redis not connected');
    return undefined;
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    const reply = await Promise.race([
      redis.tributaryRateLimit(...args),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs);
      }),
    ]);
    if (!reply) skipped('Redis too slow');
    return reply;
  } catch (err) {
    skipped(`Redis error: ${(err as Error).message}`);
    return undefined;
  } finally {
    clearTimeout(timer);
  }
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

/**
 * Tokens a node has taken from a key's bucket ahead of its requests, spent locally. They
 * left the shared bucket when taken, so no node ever lets more through than the limit;
 * what a node took and did not spend is lost (never given back), so a lease is small.
 */
interface Lease {
  perMinute: number;
  /** Left to spend here. */
  tokens: number;
  /** Dropped after this (local clock, ms): tokens taken long ago would bend the rate. */
  expires: number;
  /** The bucket's own remaining when the tokens were taken. */
  remaining: number;
  /** When the bucket is full again (local clock, ms), as of then. */
  fullAt: number;
  /** When the last lease was asked for, and the tokens spent here since: the key's pace. */
  since: number;
  spent: number;
  /** The ask in flight for this key, which the requests arriving meanwhile wait for. */
  asking?: Promise<void> | undefined;
  /** Tokens the requests waiting for `asking` need. */
  queued: number;
}

/** A lease is sized to last this long at the key's pace on this node, ms. */
const LEASE_MS = 100;
/** Leased tokens unspent after this are dropped, ms. */
const LEASE_TTL_MS = 1_000;
const MAX_LEASES = 10_000;

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
 * A busy key does not cost a Redis call per request: a node takes what the key will spend
 * here in the next {@link LEASE_MS} at its recent pace (at most that share of its limit) in
 * one call and spends it locally; requests arriving while that call is in flight wait for
 * it. A key whose limit allows less than one request per lease period (a limit under 600
 * a minute) is counted in Redis request by request, exactly.
 *
 * A refused key is refused here, without Redis, until the moment Redis named for its next
 * token: no node can get a token earlier, so the answer is the same, and a flooding key
 * costs Redis (shared by every key) one call per token instead of one per request.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly #opts: RedisRateLimiterOptions;
  readonly #redis: RateLimitRedis;
  readonly #refused = new Map<string, Refusal>();
  readonly #leases = new Map<string, Lease>();
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
    const leased = this.#spendLeased(keyId, perMinute, cost);
    if (leased) return leased;
    const lease = this.#leases.get(keyId);
    if (!lease?.asking) return this.#askFor(keyId, perMinute, cost);
    // Wait for the ask in flight; what the waiters need goes into the next one, if any.
    lease.queued += cost;
    await lease.asking;
    lease.queued -= cost;
    return this.consume(keyId, perMinute, cost);
  }

  /** Spends `cost` of the key's lease here, when it holds that much. */
  #spendLeased(keyId: string, perMinute: number, cost: number): RateLimitDecision | undefined {
    const lease = this.#leases.get(keyId);
    if (!lease || lease.tokens < cost || lease.perMinute !== perMinute) return undefined;
    const now = this.#clock();
    if (now >= lease.expires) {
      lease.tokens = 0;
      return undefined;
    }
    lease.tokens -= cost;
    lease.spent += cost;
    return toDecision(perMinute, true, lease.remaining + lease.tokens, 0, lease.fullAt - now);
  }

  /** Asks Redis for `cost` and, for a busy key, a lease beyond it. */
  async #askFor(keyId: string, perMinute: number, cost: number): Promise<RateLimitDecision | undefined> {
    const now = this.#clock();
    let lease = this.#leases.get(keyId);
    if (lease && (lease.perMinute !== perMinute || now >= lease.expires)) lease.tokens = 0;
    const cap = Math.floor((perMinute * LEASE_MS) / 60_000);
    const pace = lease ? lease.spent / Math.max(1, now - lease.since) : 0;
    const wanted =
      cap <= cost ? cost : Math.min(cap, cost + (lease?.queued ?? 0) + Math.ceil(pace * LEASE_MS));
    if (cap > cost && !lease) {
      if (this.#leases.size >= MAX_LEASES) this.#dropExpiredLeases(now);
      lease = {
        perMinute,
        tokens: 0,
        expires: 0,
        remaining: 0,
        fullAt: now,
        since: now,
        spent: 0,
        queued: 0,
      };
      this.#leases.set(keyId, lease);
    }
    let done: () => void = () => {};
    if (lease && wanted > cost && !lease.asking) {
      lease.asking = new Promise<void>((resolve) => {
        done = resolve;
      });
    }
    try {
      const reply = await this.#ask(keyId, perMinute, cost, wanted);
      if (!reply) return undefined;
      const [allowed, remaining, retryAfterMs, resetMs, taken = cost] = reply;
      if (allowed !== 1) {
        this.#remember(keyId, perMinute, cost, retryAfterMs, resetMs);
        return toDecision(perMinute, false, remaining, retryAfterMs, resetMs);
      }
      const at = this.#clock();
      if (lease && taken > cost) {
        // What was left of an expired or other-limit lease is gone (set to 0 above).
        lease.perMinute = perMinute;
        lease.tokens += taken - cost;
        lease.expires = at + LEASE_TTL_MS;
        lease.remaining = remaining;
        lease.fullAt = at + resetMs;
        lease.since = at;
        lease.spent = cost;
      } else if (lease) {
        lease.spent += cost;
      }
      return toDecision(perMinute, true, remaining + (lease?.tokens ?? 0), 0, resetMs);
    } finally {
      if (lease?.asking) {
        lease.asking = undefined;
        done();
      }
    }
  }

  #dropExpiredLeases(now: number): void {
    for (const [id, l] of this.#leases) if (l.expires <= now && !l.asking) this.#leases.delete(id);
  }

  /** One EVALSHA, or undefined (logged at debug) when Redis cannot answer in time. */
  #ask(keyId: string, perMinute: number, cost: number, wanted: number): Promise<RateLimitReply | undefined> {
    const { keys, logger, now } = this.#opts;
    return askBucket(
      this.#redis,
      [keys.rateLimit(keyId), perMinute, MINUTE_MS, now?.() ?? '', cost, wanted],
      this.#opts.timeoutMs ?? 250,
      (why) => logger.debug({ keyId }, `rate limit skipped: ${why}`),
    );
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

/** The `RateLimit-*` headers of a decision. */
export function rateLimitHeaders(d: RateLimitDecision): [string, string][] {
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
    const perMinute = principal ? limitOf(principal, opts.defaultPerMinute) : undefined;
    const limiter = opts.limiter;
    if (!limiter || !principal || perMinute === undefined) return next();
    // On Node's response the headers survive whatever response the route builds (errors,
    // streams); under `app.request()` they go on the Hono response instead.
    const outgoing = c.env?.outgoing;
    const setHeaders = (d: RateLimitDecision) => {
      for (const [name, value] of rateLimitHeaders(d)) {
        if (outgoing) outgoing.setHeader(name, value);
        else c.header(name, value);
      }
    };
    if (c.req.method === 'POST' && INGEST_PATHS.has(c.req.path)) {
      c.set('spendEvents', (n: number) => spendEventsOf(limiter, principal.keyId, perMinute, n, setHeaders));
      return next();
    }
    const decision = await limiter.consume(principal.keyId, perMinute);
    if (!decision) return next();
    if (!decision.allowed) {
      for (const [name, value] of rateLimitHeaders(decision)) c.header(name, value);
      return errorResponse(c, rateLimited(decision, 'requests'));
    }
    if (outgoing) setHeaders(decision);
    await next();
    if (!outgoing) setHeaders(decision);
  };
}

/** A key's limit, events (requests) per minute; undefined: unlimited (the bootstrap key, or no default). */
export function limitOf(principal: Principal, defaultPerMinute: number | undefined): number | undefined {
  return (
    principal.rateLimitPerMinute ?? (principal.keyId === BOOTSTRAP_KEY_ID ? undefined : defaultPerMinute)
  );
}

/**
 * Spends `n` events of a key's limit on an ingest route (once the body is read): `413
 * batch_too_large` when `n` is over the whole limit, `429 rate_limited` when the key is out
 * of events; `setHeaders` gets the decision's headers either way.
 */
export async function spendEventsOf(
  limiter: RateLimiter,
  keyId: string,
  perMinute: number,
  n: number,
  setHeaders: (d: RateLimitDecision) => void,
): Promise<void> {
  if (n > perMinute) {
    // Never allowed, however long the client waits: a 429 would have SDKs retry it
    // forever, so this is the batch's own fault, like any other oversized batch.
    throw new ApiError(
      'batch_too_large',
      413,
      `this key may send at most ${perMinute} events a minute and the request holds ${n}; send smaller batches`,
    );
  }
  const decision = await limiter.consume(keyId, perMinute, n);
  if (!decision) return;
  setHeaders(decision);
  if (!decision.allowed) throw rateLimited(decision, 'events');
}

/** Spends `n` events of the caller's limit (ingest routes, once the body is read); throws its 429 or 413. */
export async function spendEvents(c: Context<AppEnv>, n: number): Promise<void> {
  await c.get('spendEvents')?.(n);
}
