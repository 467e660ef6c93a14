import { hostname } from 'node:os';
import { Redis, type RedisOptions } from 'ioredis';
import type pg from 'pg';
import type { Logger } from 'pino';
import { type BufferKeys, bufferKeys } from './buffer/keys.ts';
import type { Config } from './config.ts';
import { createDb, createPool, type Db } from './store/db.ts';
import { createLogger } from './telemetry/logger.ts';
import { Metrics } from './telemetry/metrics.ts';

/** Clients shared by every role of one process. Built once; closed in reverse order. */
export interface Deps {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  /** Commands that must fail fast while Redis is away (ingest answers 503, never hangs). */
  redis: Redis;
  keys: BufferKeys;
  pool: pg.Pool;
  db: Db;
  /**
   * A new connection for blocking reads (XREADGROUP BLOCK holds its connection). Fails
   * fast like `redis`; wait for its `ready` event instead of queueing commands.
   */
  blockingRedis(blockMs: number): Redis;
  close(): Promise<void>;
}

function redisOptions(): RedisOptions {
  return {
    // Reconnect forever, at most every 2 s.
    retryStrategy: (times) => Math.min(times * 100, 2_000),
    connectionName: `tributary:${hostname()}:${process.pid}`,
  };
}

export function createDeps(config: Config, role: string): Deps {
  const logger = createLogger(config.LOG_LEVEL, { role });
  const metrics = new Metrics(undefined, { processMetrics: true });
  const extra: Redis[] = [];

  const redis = new Redis(config.REDIS_URL, {
    ...redisOptions(),
    // No queueing while disconnected and no resend after a reconnect: a request either
    // sees its write confirmed or gets an error (503) and retries with the same ids.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: 5_000,
    enableAutoPipelining: true,
  });
  redis.on('error', (err) => logger.debug({ err: err.message }, 'redis connection error'));
  redis.on('ready', () => logger.info('redis connected'));

  const pool = createPool({
    url: config.DATABASE_URL,
    max: config.DATABASE_POOL_SIZE,
    applicationName: `tributary-${role}`,
  });

  return {
    config,
    logger,
    metrics,
    redis,
    keys: bufferKeys(config.REDIS_PREFIX, config.STREAM_PARTITIONS),
    pool,
    db: createDb(pool),
    blockingRedis(blockMs) {
      const conn = new Redis(config.REDIS_URL, {
        ...redisOptions(),
        // Fail fast here too. A read that ioredis queued while Redis was away, or sent again
        // after a reconnect, runs after its caller has given up: its entries are delivered
        // to nobody and sit pending until CLAIM_IDLE_MS. The consumer waits for `ready`.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        autoResendUnfulfilledCommands: false,
        commandTimeout: blockMs + 5_000,
      });
      conn.on('error', (err) => logger.debug({ err: err.message }, 'redis (blocking) connection error'));
      extra.push(conn);
      return conn;
    },
    async close() {
      for (const conn of [...extra, redis]) {
        await conn.quit().catch(() => conn.disconnect());
      }
      await pool.end().catch(() => {});
    },
  };
}
