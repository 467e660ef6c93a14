import { Hono } from 'hono';
import type pg from 'pg';
import type { BufferMonitor } from '../../buffer/monitor.ts';
import type { RedisLike } from '../../buffer/redis-client.ts';
import { BREAKER_SEVERITY, type WorkerStatus, type WorkerStatusBoard } from '../../buffer/worker-status.ts';
import { type BusinessSummary, businessSummary } from '../../store/business.repo.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import { metricsSource } from '../api-cluster.ts';
import type { AppEnv } from '../env.ts';

export interface HealthRoutesDeps {
  redis: RedisLike;
  pool: pg.Pool;
  monitor: BufferMonitor;
  metrics: Metrics;
  workers: WorkerStatusBoard;
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

/** Every live worker's breaker and checkpoint, and the worst of them. */
function workersSummary(workers: WorkerStatus[] | null) {
  if (!workers) return { circuitBreaker: 'unknown', checkpoint: null, workers: null };
  let breaker: WorkerStatus['breaker'] | 'no workers' = 'no workers';
  const checkpoint = { events: 0, segments: 0, bytes: 0, failed: [] as string[] };
  for (const w of workers) {
    if (breaker === 'no workers' || BREAKER_SEVERITY[w.breaker] > BREAKER_SEVERITY[breaker])
      breaker = w.breaker;
    checkpoint.events += w.checkpoint.events;
    checkpoint.segments += w.checkpoint.segments;
    checkpoint.bytes += w.checkpoint.bytes;
    if (w.checkpoint.failed) checkpoint.failed.push(`${w.name}: ${w.checkpoint.failed}`);
  }
  return { circuitBreaker: breaker, checkpoint, workers };
}

/**
 * Health endpoints, unauthenticated. Readiness needs Redis only: with PostgreSQL down
 * the API still accepts events (the buffer absorbs them), so it must stay in the load
 * balancer; the database state is reported, not failed on.
 */
export function healthRoutes(deps: HealthRoutesDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const redisCheck = () => timed(() => deps.redis.ping());
  const databaseCheck = () => timed(() => deps.pool.query('SELECT 1'));

  app.get('/health/live', (c) => c.json({ status: 'ok' }));

  app.get('/health/ready', async (c) => {
    const [redis, database] = await Promise.all([redisCheck(), databaseCheck()]);
    const ready = redis.ok;
    const status = ready ? (database.ok ? 'ok' : 'degraded') : 'unavailable';
    return c.json({ status, checks: { redis, database } }, ready ? 200 : 503);
  });

  app.get('/health/buffer', async (c) => {
    try {
      return c.json({ status: 'ok', ...(await deps.monitor.snapshot()) });
    } catch (err) {
      return c.json({ status: 'unavailable', error: err instanceof Error ? err.message : String(err) }, 503);
    }
  });

  // Up only when this process reaches PostgreSQL, no worker's breaker is open and every
  // checkpoint accepts writes (a failed one needs an operator: see the README).
  app.get('/health/database', async (c) => {
    const [database, workers] = await Promise.all([databaseCheck(), deps.workers.live().catch(() => null)]);
    const summary = workersSummary(workers);
    const failed = (summary.checkpoint?.failed.length ?? 0) > 0;
    const breakerOpen = summary.circuitBreaker === 'open' || summary.circuitBreaker === 'half-open';
    const status = failed ? 'checkpoint_failed' : !database.ok || breakerOpen ? 'down' : 'up';
    return c.json({ status, ...database, ...summary }, status === 'up' ? 200 : 503);
  });

  // Computed at most once a minute per process, whatever the polling rate.
  let business: { at: number; summary: Promise<BusinessSummary> } | undefined;
  app.get('/health/business', async (c) => {
    if (!business || Date.now() - business.at > BUSINESS_TTL_MS) {
      const summary = businessSummary(deps.pool);
      business = { at: Date.now(), summary };
      summary.catch(() => {
        business = undefined;
      });
    }
    try {
      return c.json({
        status: 'ok',
        window: '24h',
        cachedForS: BUSINESS_TTL_MS / 1000,
        ...(await business.summary),
      });
    } catch (err) {
      return c.json({ status: 'unavailable', error: err instanceof Error ? err.message : String(err) }, 503);
    }
  });

  app.get('/health', async (c) => {
    const [redis, database, buffer, workers] = await Promise.all([
      redisCheck(),
      databaseCheck(),
      deps.monitor.snapshot().catch(() => null),
      deps.workers.live().catch(() => null),
    ]);
    const summary = workersSummary(workers);
    const degraded =
      !database.ok ||
      buffer?.backpressure ||
      summary.circuitBreaker !== 'closed' ||
      (summary.checkpoint?.events ?? 0) > 0 ||
      (summary.checkpoint?.failed.length ?? 0) > 0;
    const status = !redis.ok ? 'unavailable' : degraded ? 'degraded' : 'ok';
    return c.json({ status, redis, database, buffer, ...summary }, redis.ok ? 200 : 503);
  });

  const metrics = metricsSource(deps.metrics.registry);
  app.get('/metrics', async (c) => {
    const { text, contentType } = await metrics();
    c.header('content-type', contentType);
    return c.body(text);
  });

  return app;
}
