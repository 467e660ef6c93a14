import { readFileSync } from 'node:fs';
import type { ChainableCommander } from 'ioredis';
import type { RedisLike } from './redis-client.ts';

const lua = (name: string) => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');

/** Redis client with the buffer's Lua commands registered. */
export type BufferRedis = RedisLike & {
  /** See lua/enqueue.lua: one character per event, '1' written or '0' a repeat. */
  tributaryEnqueue(numKeys: number, ...args: (string | number)[]): Promise<string>;
  /** See lua/ack-delete.lua: the number of entries acknowledged. */
  tributaryAckDelete(key: string, group: string, ...ids: string[]): Promise<number>;
  /** See lua/replay-dead.lua: the number of dead letters moved back. */
  tributaryReplayDead(numKeys: number, ...args: (string | number)[]): Promise<number>;
  /** See lua/erase-dead.lua: the number of dead letters deleted (and counted). */
  tributaryEraseDead(deadLetter: string, counts: string, ...args: (string | number)[]): Promise<number>;
};

/**
 * Scripts called with their key count first, for a variable number of keys. On a cluster,
 * ioredis's automatic pipelining routes a script by its first argument, here the count,
 * and then refuses the batch (keys of other nodes): these must bypass it.
 */
export const VARIABLE_KEY_SCRIPTS: readonly string[] = ['tributaryEnqueue', 'tributaryReplayDead'];

/** A pipeline of a client passed through {@link registerScripts}: the scripts are queued like any command. */
export type BufferPipeline = ChainableCommander & {
  tributaryEnqueue(numKeys: number, ...args: (string | number)[]): BufferPipeline;
};

/** Registers the buffer's Lua scripts (EVALSHA with automatic fallback to EVAL). Idempotent. */
export function registerScripts(redis: RedisLike): BufferRedis {
  const r = redis as BufferRedis;
  if (typeof r.tributaryEnqueue !== 'function') {
    redis.defineCommand('tributaryEnqueue', { lua: lua('enqueue') });
    redis.defineCommand('tributaryAckDelete', { numberOfKeys: 1, lua: lua('ack-delete') });
    redis.defineCommand('tributaryReplayDead', { lua: lua('replay-dead') });
    redis.defineCommand('tributaryEraseDead', { numberOfKeys: 2, lua: lua('erase-dead') });
  }
  return r;
}
