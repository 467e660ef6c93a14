import { Hono } from 'hono';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { BufferMonitor } from '../../buffer/monitor.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import type { AppEnv } from '../env.ts';

export interface HealthRoutesDeps {
  redis: Redis;
  pool: pg.Pool;
  monitor: BufferMonitor;
  metrics: Metrics;
}

interface Check {
  ok: boolean;
  latencyMs?: number;
  error?: string;
}

const TIMEOUT_MS = 1_000;

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

  app.get('/health/database', async (c) => {
    const database = await databaseCheck();
    return c.json({ status: database.ok ? 'up' : 'down', ...database }, database.ok ? 200 : 503);
  });

  app.get('/health', async (c) => {
    const [redis, database, buffer] = await Promise.all([
      redisCheck(),
      databaseCheck(),
      deps.monitor.snapshot().catch(() => null),
    ]);
    const status = !redis.ok ? 'unavailable' : !database.ok || buffer?.backpressure ? 'degraded' : 'ok';
    return c.json({ status, redis, database, buffer }, redis.ok ? 200 : 503);
  });

  app.get('/metrics', async (c) => {
    c.header('content-type', deps.metrics.registry.contentType);
    return c.body(await deps.metrics.registry.metrics());
  });

  return app;
}
