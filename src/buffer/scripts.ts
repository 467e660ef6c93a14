import { readFileSync } from 'node:fs';
import type { ChainableCommander } from 'ioredis';
import type { RedisLike } from './redis-client.ts';

const lua = (name: string) => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');

/** Redis client with Tributary's Lua commands registered. */
export type BufferRedis = RedisLike & {
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

/**
 * Scripts called with their key count first, for a variable number of keys. On a cluster,
 * ioredis's automatic pipelining routes a script by its first argument, here the count,
 * and then refuses the batch (keys of other nodes): these must bypass it.
 */
export const VARIABLE_KEY_SCRIPTS: readonly string[] = ['tributaryEnqueue'];

/** A pipeline of a client passed through {@link registerScripts}: the scripts are queued like any command. */
export type BufferPipeline = ChainableCommander & {
  tributaryEnqueue(numKeys: number, ...args: (string | Buffer | number)[]): BufferPipeline;
};

/** Registers the Lua scripts (EVALSHA with automatic fallback to EVAL). Idempotent. */
export function registerScripts(redis: RedisLike): BufferRedis {
  const r = redis as BufferRedis;
  if (typeof r.tributaryEnqueue !== 'function') {
    redis.defineCommand('tributaryEnqueue', { lua: lua('enqueue') });
    redis.defineCommand('tributaryAckDelete', { numberOfKeys: 1, lua: lua('ack-delete') });
    redis.defineCommand('tributaryRateLimit', { numberOfKeys: 1, lua: lua('rate-limit') });
  }
  return r;
}
