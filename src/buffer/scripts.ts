import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

const lua = (name: string) => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');

/** Redis client with Tributary's Lua commands registered. */
export type BufferRedis = Redis & {
  tributaryEnqueue(numKeys: number, ...args: (string | Buffer | number)[]): Promise<(string | number)[]>;
  tributaryAckDelete(key: string, group: string, ...ids: string[]): Promise<number>;
  /** See lua/rate-limit.lua: `[allowed, remaining, retryAfterMs, resetMs]`. */
  tributaryRateLimit(
    bucket: string,
    limit: number,
    periodMs: number,
    nowMs: number | '',
    cost: number,
  ): Promise<[number, number, number, number]>;
};

/** Registers the Lua scripts (EVALSHA with automatic fallback to EVAL). Idempotent. */
export function registerScripts(redis: Redis): BufferRedis {
  const r = redis as BufferRedis;
  if (typeof r.tributaryEnqueue !== 'function') {
    redis.defineCommand('tributaryEnqueue', { lua: lua('enqueue') });
    redis.defineCommand('tributaryAckDelete', { numberOfKeys: 1, lua: lua('ack-delete') });
    redis.defineCommand('tributaryRateLimit', { numberOfKeys: 1, lua: lua('rate-limit') });
  }
  return r;
}
