import { Hono } from 'hono';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { DeadLetterStream } from '../buffer/dead-letter.ts';
import type { BufferMonitor } from '../buffer/monitor.ts';
import type { EventProducer } from '../buffer/producer.ts';
import type { WorkerStatusBoard } from '../buffer/worker-status.ts';
import type { Config } from '../config.ts';
import type { RetentionService } from '../retention/service.ts';
import type { Db } from '../store/db.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AppEnv } from './env.ts';
import { ApiError, errorResponse } from './errors.ts';
import type { KeyResolver } from './key-resolver.ts';
import { requestContext, requestLogger } from './middleware/request-context.ts';
import { adminRoutes } from './routes/admin.ts';
import { eventRoutes } from './routes/events.ts';
import { healthRoutes } from './routes/health.ts';

export interface AppDeps {
  config: Pick<Config, 'MAX_BODY_BYTES' | 'RETENTION_DAYS' | 'RETENTION_BY_SERVICE'>;
  logger: Logger;
  metrics: Metrics;
  redis: Redis;
  pool: pg.Pool;
  db: Db;
  producer: EventProducer;
  monitor: BufferMonitor;
  deadLetters: DeadLetterStream;
  keys: KeyResolver;
  /** Breaker and checkpoint state reported by every worker. */
  workers: WorkerStatusBoard;
  retention: RetentionService;
}

/** The whole HTTP API as a Hono app (no server attached). */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use('*', requestContext(deps.logger, deps.metrics));

  app.route('/', healthRoutes(deps));
  app.route('/', eventRoutes(deps));
  app.route('/', adminRoutes(deps));

  app.notFound((c) =>
    errorResponse(c, new ApiError('not_found', 404, `no route for ${c.req.method} ${c.req.path}`)),
  );
  app.onError((err, c) => {
    if (err instanceof ApiError) return errorResponse(c, err);
    const log = requestLogger(c, deps.logger);
    log.error({ err }, 'unhandled error');
    return errorResponse(c, new ApiError('internal', 500, 'internal error'));
  });
  return app;
}
