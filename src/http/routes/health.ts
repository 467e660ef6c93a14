import { access } from 'node:fs/promises';
import type { OpenAPIHono } from '@hono/zod-openapi';
import type pg from 'pg';
import type { BufferMonitor } from '../../buffer/monitor.ts';
import type { RedisLike } from '../../buffer/redis-client.ts';
import { BREAKER_SEVERITY, type WorkerStatus, type WorkerStatusBoard } from '../../buffer/worker-status.ts';
import type { Config } from '../../config.ts';
import { type BusinessSummary, businessSummary } from '../../store/business.repo.ts';
import { ping } from '../../store/health.repo.ts';
import type { ReadRouter } from '../../store/read-replica.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import { memoryReport, volumeSpace } from '../../telemetry/resources.ts';
import { metricsSource } from '../api-cluster.ts';
import type { AppEnv } from '../env.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requireAnyScope } from '../middleware/auth.ts';
import { createRouter } from '../openapi.ts';
import {
  bufferHealth,
  businessHealth,
  DETAILS_SCOPES,
  databaseHealth,
  health,
  live,
  metrics as metricsRoute,
  ready,
  type WorkersSummary,
} from './health.schema.ts';

export interface HealthRoutesDeps {
  config: Pick<Config, 'CHECKPOINT_DIR' | 'CHECKPOINT_MIN_FREE_BYTES'>;
  redis: RedisLike;
  pool: pg.Pool;
  /** Where reads go (the business summary runs there), and why. */
  reads: Pick<ReadRouter, 'read' | 'route'>;
  monitor: BufferMonitor;
  metrics: Metrics;
  workers: WorkerStatusBoard;
  /** Resolves the key the detail endpoints need (`read` or `admin`). */
  keys: KeyResolver;
}

interface Check {
  ok: boolean;
  latencyMs?: number;
  error?: string;
}

const TIMEOUT_MS = 1_000;
const BUSINESS_TTL_MS = 60_000;

async function timed(fn: () => Promise<unknown>): Promise<Check> {
  const start = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
      }),
    ]);
    return { ok: true, latencyMs: Math.round((performance.now() - start) * 10) / 10 };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Every live worker's breaker and checkpoint, and the worst of them. */
function workersSummary(workers: WorkerStatus[] | null) {
  if (!workers)
    return { circuitBreaker: 'unknown', circuitBreakerTrigger: null, checkpoint: null, workers: null };
  let breaker: WorkerStatus['breaker'] | 'no workers' = 'no workers';
  let trigger: string | null = null;
  const checkpoint = { events: 0, segments: 0, bytes: 0, failed: [] as string[] };
  for (const w of workers) {
    if (breaker === 'no workers' || BREAKER_SEVERITY[w.breaker] > BREAKER_SEVERITY[breaker]) {
      breaker = w.breaker;
      trigger = w.breaker === 'closed' ? null : (w.breakerTrigger ?? null);
    }
    checkpoint.events += w.checkpoint.events;
    checkpoint.segments += w.checkpoint.segments;
    checkpoint.bytes += w.checkpoint.bytes;
    if (w.checkpoint.failed) checkpoint.failed.push(`${w.name}: ${w.checkpoint.failed}`);
  }
  return { circuitBreaker: breaker, circuitBreakerTrigger: trigger, checkpoint, workers };
}

/**
 * This process's memory, and the checkpoint volume as this host sees it: only when
 * CHECKPOINT_DIR exists here (`all`, or a volume shared with the workers); an API on a host of
 * its own has none and reports none.
 */
async function ownResources(config: HealthRoutesDeps['config']) {
  const exists = await access(config.CHECKPOINT_DIR).then(
    () => true,
    () => false,
  );
  const space = exists ? await volumeSpace(config.CHECKPOINT_DIR).catch(() => null) : null;
  return {
    memory: await memoryReport(),
    ...(space
      ? { checkpointVolume: { ...space, low: space.freeBytes < config.CHECKPOINT_MIN_FREE_BYTES } }
      : {}),
    minFreeBytes: config.CHECKPOINT_MIN_FREE_BYTES,
  };
}

/** Whether any checkpoint volume, this host's or a live worker's, is under CHECKPOINT_MIN_FREE_BYTES. */
const spaceLow = (resources: { checkpointVolume?: { low: boolean } }, workers: WorkerStatus[] | null) =>
  (resources.checkpointVolume?.low ?? false) || (workers ?? []).some((w) => w.volume?.low === true);

/**
 * Health endpoints. Liveness and readiness answer anyone with a bare status (no host, pid,
 * service or failing dependency); every detail needs a key with `read` or `admin` (and,
 * with ADMIN_PORT set, is served only there: `listener.ts`). Readiness needs Redis only:
 * with PostgreSQL down the API still accepts events (the buffer absorbs them), so it must
 * stay in the load balancer; the database state is reported in the details, not failed on.
 */
export function healthRoutes(deps: HealthRoutesDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  const redisCheck = () => timed(() => deps.redis.ping());
  const databaseCheck = () => timed(() => ping(deps.pool));
  const middleware = [requireAnyScope(deps.keys, DETAILS_SCOPES)];

  app.openapi(live, (c) => c.json({ status: 'ok' as const }, 200));

  app.openapi(ready, async (c) => {
    const [redis, resources, workers] = await Promise.all([
      redisCheck(),
      ownResources(deps.config),
      deps.workers.live().catch(() => null),
    ]);
    if (!redis.ok) return c.json({ status: 'unavailable' as const }, 503);
    return c.json({ status: spaceLow(resources, workers) ? ('degraded' as const) : ('ok' as const) }, 200);
  });

  app.openapi({ ...bufferHealth, middleware }, async (c) => {
    try {
      return c.json({ status: 'ok' as const, ...(await deps.monitor.snapshot()) }, 200);
    } catch (err) {
      return c.json({ status: 'unavailable' as const, error: errorText(err) }, 503);
    }
  });

  // Up only when this process reaches PostgreSQL, no worker's breaker is open and every
  // checkpoint accepts writes (a failed one needs an operator: see the README).
  app.openapi({ ...databaseHealth, middleware }, async (c) => {
    const [database, workers] = await Promise.all([databaseCheck(), deps.workers.live().catch(() => null)]);
    const summary = workersSummary(workers) as WorkersSummary;
    const failed = (summary.checkpoint?.failed.length ?? 0) > 0;
    const breakerOpen = summary.circuitBreaker === 'open' || summary.circuitBreaker === 'half-open';
    const status = failed
      ? ('checkpoint_failed' as const)
      : !database.ok || breakerOpen
        ? ('down' as const)
        : ('up' as const);
    return c.json({ status, ...database, reads: deps.reads.route, ...summary }, status === 'up' ? 200 : 503);
  });

  // Computed at most once a minute per process, whatever the polling rate.
  let business: { at: number; summary: Promise<BusinessSummary> } | undefined;
  app.openapi({ ...businessHealth, middleware }, async (c) => {
    if (!business || Date.now() - business.at > BUSINESS_TTL_MS) {
      const summary = deps.reads.read(({ pool }) => businessSummary(pool));
      business = { at: Date.now(), summary };
      summary.catch(() => {
        business = undefined;
      });
    }
    try {
      return c.json(
        {
          status: 'ok' as const,
          window: '24h' as const,
          cachedForS: BUSINESS_TTL_MS / 1000,
          ...(await business.summary),
        },
        200,
      );
    } catch (err) {
      return c.json({ status: 'unavailable' as const, error: errorText(err) }, 503);
    }
  });

  app.openapi({ ...health, middleware }, async (c) => {
    const [redis, database, buffer, workers, resources] = await Promise.all([
      redisCheck(),
      databaseCheck(),
      deps.monitor.snapshot().catch(() => null),
      deps.workers.live().catch(() => null),
      ownResources(deps.config),
    ]);
    const summary = workersSummary(workers) as WorkersSummary;
    const reads = deps.reads.route;
    const degraded =
      !database.ok ||
      spaceLow(resources, workers) ||
      (reads.replicaConfigured && reads.target === 'primary') ||
      buffer?.backpressure ||
      summary.circuitBreaker !== 'closed' ||
      (summary.checkpoint?.events ?? 0) > 0 ||
      (summary.checkpoint?.failed.length ?? 0) > 0;
    const status = !redis.ok ? ('unavailable' as const) : degraded ? ('degraded' as const) : ('ok' as const);
    return c.json({ status, redis, database, buffer, reads, resources, ...summary }, redis.ok ? 200 : 503);
  });

  const metrics = metricsSource(deps.metrics.registry);
  app.openapi(metricsRoute, async (c) => {
    const { text, contentType } = await metrics();
    return c.text(text, 200, { 'content-type': contentType });
  });

  return app;
}
