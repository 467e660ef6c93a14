import { BufferMonitor } from '../buffer/monitor.ts';
import { EventProducer } from '../buffer/producer.ts';
import type { WorkerStatusBoard } from '../buffer/worker-status.ts';
import type { Deps } from '../deps.ts';
import { FailedAuthThrottle } from '../http/auth-throttle.ts';
import { KeyInvalidations, KeyResolver } from '../http/key-resolver.ts';
import { PlanRegistry } from '../http/plan-registry.ts';
import { LiveHub } from '../live/hub.ts';
import { findActiveKeyByHash, isStoredKeyShape } from '../store/api-keys.repo.ts';
import { registerAutoscaleMetrics, WorkerDemand } from '../telemetry/autoscale-metrics.ts';
import { registerBufferMetrics, registerKeyLoadMetrics } from '../telemetry/buffer-metrics.ts';

// How the API's own services are made from the clients; services.ts decides when (once, on
// first use) and how they are closed.

/** Buffer length and memory against the high-water marks (backpressure), sampled and exported. */
export function startMonitor({ config, redis, redisKeys, logger, metrics }: Deps): BufferMonitor {
  const monitor = new BufferMonitor({
    redis,
    keys: redisKeys,
    maxEvents: config.BUFFER_MAX_EVENTS,
    maxMemoryRatio: config.BUFFER_MAX_MEMORY_RATIO,
    maxSharePerKey: config.BUFFER_MAX_SHARE_PER_KEY,
    logger,
  });
  monitor.start();
  registerBufferMetrics(metrics.registry, monitor);
  if (monitor.keyLoad) registerKeyLoadMetrics(metrics.registry, monitor.keyLoad);
  return monitor;
}

/**
 * How many workers the buffer needs, sampled and exported. In the API rather than the
 * workers: it sees the whole buffer and every worker, and reports even when no worker runs
 * (KEDA scales the workers on it: ops/k8s).
 */
export function startDemand(
  { redis, redisKeys, logger, metrics }: Deps,
  workers: WorkerStatusBoard,
): WorkerDemand {
  const demand = new WorkerDemand({ redis, keys: redisKeys, workers, logger });
  demand.start();
  registerAutoscaleMetrics(metrics.registry, demand);
  return demand;
}

/** Writes events to their partition's stream, remembering ids for the dedupe window (one script per partition). */
export function createProducer({ config, redis, redisKeys }: Deps): EventProducer {
  return new EventProducer({
    redis,
    keys: redisKeys,
    dedupeWindowS: config.DEDUPE_WINDOW_S,
    waitReplicas: config.REDIS_WAIT_REPLICAS,
    waitTimeoutMs: config.REDIS_WAIT_TIMEOUT_MS,
  });
}

/**
 * API keys by hash, cached; creations, revocations and rotations reach every API process
 * over pub/sub (a connection of its own). Keys of the wrong shape cost no lookup, and with
 * AUTH_FAILURES_PER_MINUTE an address that fails too often is throttled.
 */
export function createKeyResolver(deps: Deps): KeyResolver {
  const { config, redis, redisKeys, logger, db } = deps;
  return new KeyResolver({
    findByHash: (hash) => findActiveKeyByHash(db, hash),
    storedKeyShape: isStoredKeyShape,
    adminApiKey: config.ADMIN_API_KEY,
    logger,
    throttle:
      config.AUTH_FAILURES_PER_MINUTE > 0
        ? new FailedAuthThrottle({
            redis,
            keys: redisKeys,
            perMinute: config.AUTH_FAILURES_PER_MINUTE,
            logger,
          })
        : undefined,
    invalidations: new KeyInvalidations({
      redis,
      subscriber: deps.blockingRedis(1_000),
      channel: redisKeys.keyInvalidations,
      logger,
    }),
  });
}

/** Tracking plans (§14), loaded and kept current over pub/sub (a connection of its own). */
export async function startPlans({
  config,
  pool,
  redis,
  redisKeys,
  logger,
  metrics,
  blockingRedis,
}: Deps): Promise<PlanRegistry> {
  const plans = new PlanRegistry({
    metrics,
    pool,
    redis,
    subscriber: blockingRedis(60_000),
    channel: redisKeys.planChanges,
    logger,
    reloadEveryMs: config.PLANS_RELOAD_S * 1_000,
  });
  await plans.start();
  return plans;
}

/**
 * The live view of this API process, looking for listeners from now on; undefined when it
 * is turned off (LIVE_MAX_EVENTS_PER_S=0).
 */
export function startLive({
  config,
  redis,
  redisKeys,
  metrics,
  logger,
  blockingRedis,
}: Deps): LiveHub | undefined {
  if (config.LIVE_MAX_EVENTS_PER_S === 0) return undefined;
  const hub = new LiveHub({ config, redis, blockingRedis, keys: redisKeys, metrics, logger });
  hub.start();
  return hub;
}
