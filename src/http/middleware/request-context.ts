import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import type { Logger } from 'pino';
import type { Metrics } from '../../telemetry/metrics.ts';
import type { AppEnv } from '../env.ts';

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Gives every request an id (the client's `x-request-id` when it is sane), a child
 * logger carrying it, one access-log line and a duration sample.
 */
export function requestContext(logger: Logger, metrics: Metrics): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const start = performance.now();
    const incoming = c.req.header('x-request-id');
    const requestId = incoming && CLIENT_ID.test(incoming) ? incoming : randomUUID();
    c.set('requestId', requestId);
    const log = logger.child({ requestId });
    c.set('logger', log);
    c.header('x-request-id', requestId);
    await next();
    c.header('x-request-id', requestId);
    const seconds = (performance.now() - start) / 1000;
    const matched = routePath(c, -1);
    const route = matched && matched !== '*' && matched !== '/*' ? matched : 'unmatched';
    const status = c.res.status;
    metrics.httpDuration.observe({ route, method: c.req.method, status: String(status) }, seconds);
    log.info(
      { method: c.req.method, route, path: c.req.path, status, ms: Math.round(seconds * 10_000) / 10 },
      'request',
    );
  };
}
