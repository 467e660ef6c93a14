import { hostname } from 'node:os';
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type pg from 'pg';
import type { Logger } from 'pino';
import { type BufferKeys, bufferKeys } from './buffer/keys.ts';
import type { RedisLike } from './buffer/redis-client.ts';
import { VARIABLE_KEY_SCRIPTS } from './buffer/scripts.ts';
import type { Config } from './config.ts';
import { createDb, createPool, type Db } from './store/db.ts';
import { createLogger } from './telemetry/logger.ts';
import { Metrics } from './telemetry/metrics.ts';

/** Clients shared by every role of one process. Built once; closed in reverse order. */
export interface Deps {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  /**
   * Commands that must fail fast while Redis is away (ingest answers 503, never hangs).
   * A Redis Cluster client when REDIS_CLUSTER_NODES is set.
   */
  redis: RedisLike;
  /** Every Redis key name of the buffer (streams, dedupe, workers, channels), under REDIS_PREFIX. */
  redisKeys: BufferKeys;
  pool: pg.Pool;
  db: Db;
  /**
   * A new connection for blocking reads (XREADGROUP BLOCK holds its connection), or a new
   * cluster client with connections of its own. Fails fast like `redis`; wait for its
   * `ready` event instead of queueing commands.
   */
  blockingRedis(blockMs: number): RedisLike;
  close(): Promise<void>;
}

/**
 * Fail fast: no queueing while disconnected and no resend after a reconnect, so a request
 * either sees its write confirmed or gets an error (503) and retries with the same ids.
 * A read that ioredis queued while Redis was away, or sent again after a reconnect, would
 * run after its caller gave up: its entries delivered to nobody, pending until
 * CLAIM_IDLE_MS. Callers wait for `ready` instead.
 */
const FAIL_FAST = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  autoResendUnfulfilledCommands: false,
} as const;

/** Reconnect forever, at most every 2 s. */
const reconnectDelay = (times: number) => Math.min(times * 100, 2_000);

interface ConnectionSettings {
  commandTimeout: number;
  enableAutoPipelining?: boolean;
}

/** One client: a connection to REDIS_URL, or a Redis Cluster client when REDIS_CLUSTER_NODES is set. */
function connectRedis(config: Config, settings: ConnectionSettings): RedisLike {
  const connectionName = `tributary:${hostname()}:${process.pid}`;
  const seeds = config.REDIS_CLUSTER_NODES;
  if (!seeds || seeds.length === 0) {
    const options: RedisOptions = {
      ...FAIL_FAST,
      ...settings,
      retryStrategy: reconnectDelay,
      connectionName,
    };
    return new Redis(config.REDIS_URL, options);
  }
  const options: ClusterOptions = {
    // The cluster client reconnects when it lost every node. A lost node is not
    // reconnected: ioredis refreshes the slot map and follows MOVED to its replacement.
    clusterRetryStrategy: reconnectDelay,
    enableOfflineQueue: FAIL_FAST.enableOfflineQueue,
    // Everything on primaries: XREADGROUP moves the group's cursor (a write), and replicas lag.
    scaleReads: 'master',
    enableAutoPipelining: settings.enableAutoPipelining ?? false,
    autoPipeliningIgnoredCommands: [...VARIABLE_KEY_SCRIPTS],
    redisOptions: {
      maxRetriesPerRequest: FAIL_FAST.maxRetriesPerRequest,
      autoResendUnfulfilledCommands: FAIL_FAST.autoResendUnfulfilledCommands,
      commandTimeout: settings.commandTimeout,
      connectionName,
      ...clusterCredentials(config.REDIS_URL),
    },
  };
  return new Cluster(seeds.map(seedNode), options);
}

/** `host:port` (IPv6 in brackets) → a cluster seed. */
function seedNode(seed: string): { host: string; port: number } {
  const colon = seed.lastIndexOf(':');
  return { host: seed.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(seed.slice(colon + 1)) };
}

/** Username, password and TLS (`rediss:`) of REDIS_URL, which apply to every cluster node. */
function clusterCredentials(redisUrl: string): Pick<RedisOptions, 'username' | 'password' | 'tls'> {
  const url = new URL(redisUrl);
  return {
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/**
 * The clients of one process: pino logger, prom registry, the fail-fast Redis client (and
 * blocking connections on demand), the PostgreSQL pool with drizzle. `close()` quits every
 * Redis connection, then ends the pool.
 */
export function createDeps(config: Config, role: string): Deps {
  const logger = createLogger(config.LOG_LEVEL, { role });
  const metrics = new Metrics(undefined, { processMetrics: true });
  const extra: RedisLike[] = [];
  const logErrors = (conn: RedisLike, what: string) => {
    conn.on('error', (err: Error) => logger.debug({ err }, `${what} connection error`));
    // A cluster client reports errors of one node separately.
    conn.on('node error', (err: Error, node: string) =>
      logger.debug({ err, node }, `${what} node connection error`),
    );
  };

  const redis = connectRedis(config, { commandTimeout: 5_000, enableAutoPipelining: true });
  logErrors(redis, 'redis');
  redis.on('ready', () =>
    logger.info(config.REDIS_CLUSTER_NODES ? { cluster: config.REDIS_CLUSTER_NODES } : {}, 'redis connected'),
  );

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
    redisKeys: bufferKeys(config.REDIS_PREFIX, config.STREAM_PARTITIONS),
    pool,
    db: createDb(pool),
    blockingRedis(blockMs) {
      const conn = connectRedis(config, { commandTimeout: blockMs + 5_000 });
      logErrors(conn, 'redis (blocking)');
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
