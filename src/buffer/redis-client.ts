import type { Cluster, Redis } from 'ioredis';

/**
 * A Redis client: one server (`Redis`) or a Redis Cluster (`Cluster`, with REDIS_CLUSTER_NODES).
 * Both have the same commands. On a cluster every command, script, pipeline and MULTI
 * must keep its keys within one hash slot: the partition's `{p}` tag does that for the
 * buffer's keys; every other key is used alone.
 */
export type RedisLike = Redis | Cluster;

/** Whether the client talks to a Redis Cluster. */
export function isCluster(redis: RedisLike): redis is Cluster {
  return (redis as { isCluster?: boolean }).isCluster === true;
}

/**
 * The servers that hold the data: the one server, or every primary of a cluster (for
 * server-wide figures such as memory, which must be read on each of them).
 */
export function primaries(redis: RedisLike): Redis[] {
  return isCluster(redis) ? redis.nodes('master') : [redis];
}
