import { randomUUID } from 'node:crypto';
import { context, trace } from '@opentelemetry/api';
import type { Context, MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import type { Logger } from 'pino';
import type { Metrics } from '../../telemetry/metrics.ts';
import { extractContext, getTracer, SpanKind, SpanStatusCode } from '../../telemetry/tracing.ts';
import type { AppEnv } from '../env.ts';

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

type DurationTimer = { observe(seconds: number): void };

/**
 * Gives every request an id (the client's `x-request-id` when it is sane), one access-log
 * line and a duration sample. The line and the span name the route pattern
 * (`/v1/users/:userId/events`), never the path: a subject id in a log would outlive the
 * erasure it asked for. Handlers that log more get a child logger carrying the id
 * from `requestLogger(c)`; it is only built when asked for.
 */
export function requestContext(logger: Logger, metrics: Metrics): MiddlewareHandler<AppEnv> {
  // One histogram child per route × method × status: prom-client hashes labels on each
  // labelled call, the cached child does not.
  const timers = new Map<string, DurationTimer>();
  const timer = (route: string, method: string, status: number): DurationTimer => {
    const key = `${route} ${method} ${status}`;
    let t = timers.get(key);
    if (!t) {
      t = metrics.httpDuration.labels({ route, method, status: String(status) });
      timers.set(key, t);
    }
    return t;
  };
  const tracer = getTracer();
  return async (c, next) => {
    const start = performance.now();
    // One server span per request, continuing the caller's trace when it sends traceparent.
    const parent = extractContext(c.env?.incoming?.headers ?? Object.fromEntries(c.req.raw.headers));
    const span = tracer.startSpan(c.req.method, { kind: SpanKind.SERVER }, parent);
    const incoming = c.req.header('x-request-id');
    const requestId = incoming && CLIENT_ID.test(incoming) ? incoming : randomUUID();
    c.set('requestId', requestId);
    c.set('baseLogger', logger);
    // On Node's response the header survives whatever response the app builds, errors
    // included; under `app.request()` it goes on the Hono response instead.
    const outgoing = c.env?.outgoing;
    if (outgoing) outgoing.setHeader('x-request-id', requestId);
    await context.with(trace.setSpan(parent, span), next);
    if (!outgoing) c.header('x-request-id', requestId);
    const seconds = (performance.now() - start) / 1000;
    const matched = routePath(c, -1);
    const route = matched && matched !== '*' && matched !== '/*' ? matched : 'unmatched';
    const status = c.res.status;
    timer(route, c.req.method, status).observe(seconds);
    let traceId: string | undefined;
    if (span.isRecording()) {
      traceId = span.spanContext().traceId;
      span.updateName(`${c.req.method} ${route}`);
      span.setAttributes({
        'http.request.method': c.req.method,
        'http.route': route,
        'http.response.status_code': status,
        'tributary.request_id': requestId,
      });
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
    logger.info(
      {
        requestId,
        traceId,
        method: c.req.method,
        route,
        status,
        ms: Math.round(seconds * 10_000) / 10,
      },
      'request',
    );
  };
}

/** The request's logger: every line carries its `requestId` (`fallback` outside `requestContext`). */
export function requestLogger(c: Context<AppEnv>, fallback: Logger): Logger {
  let log = c.get('logger');
  if (!log) {
    log = (c.get('baseLogger') ?? fallback).child({ requestId: c.get('requestId') });
    c.set('logger', log);
  }
  return log;
}
