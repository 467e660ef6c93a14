import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { context, type Context as OtelContext, type Span, trace } from '@opentelemetry/api';
import type { Context, MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import type { Logger } from 'pino';
import type { Metrics } from '../../telemetry/metrics.ts';
import { extractContext, getTracer, SpanKind, SpanStatusCode } from '../../telemetry/tracing.ts';
import type { AppEnv } from '../env.ts';

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

type DurationTimer = { observe(seconds: number): void };

/** A request being served: what {@link RequestRecorder.end} needs to time, trace and log it. */
export interface RequestRecord {
  readonly start: number;
  readonly requestId: string;
  readonly span: Span;
  /** The trace context the request's work runs in (its server span). */
  readonly context: OtelContext;
}

/**
 * What every request gets, whichever way it is served (Hono, or the ingest fast path): an id
 * (the client's `x-request-id` when it is sane), a server span continuing the caller's trace,
 * then one duration sample and one access-log line naming the route pattern.
 */
export interface RequestRecorder {
  begin(headers: IncomingHttpHeaders | Record<string, string>, method: string): RequestRecord;
  end(record: RequestRecord, method: string, route: string, status: number): void;
}

export function requestRecorder(logger: Logger, metrics: Metrics): RequestRecorder {
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
  return {
    begin(headers, method) {
      const start = performance.now();
      // One server span per request, continuing the caller's trace when it sends traceparent.
      const parent = extractContext(headers);
      const span = tracer.startSpan(method, { kind: SpanKind.SERVER }, parent);
      const incoming = headers['x-request-id'];
      const requestId = typeof incoming === 'string' && CLIENT_ID.test(incoming) ? incoming : randomUUID();
      return { start, requestId, span, context: trace.setSpan(parent, span) };
    },
    end({ start, requestId, span }, method, route, status) {
      const seconds = (performance.now() - start) / 1000;
      timer(route, method, status).observe(seconds);
      let traceId: string | undefined;
      if (span.isRecording()) {
        traceId = span.spanContext().traceId;
        span.updateName(`${method} ${route}`);
        span.setAttributes({
          'http.request.method': method,
          'http.route': route,
          'http.response.status_code': status,
          'tributary.request_id': requestId,
        });
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
      logger.info(
        { requestId, traceId, method, route, status, ms: Math.round(seconds * 10_000) / 10 },
        'request',
      );
    },
  };
}

/**
 * Gives every request an id, one access-log line and a duration sample
 * ({@link requestRecorder}). The line and the span name the route pattern
 * (`/v1/users/:userId/events`), never the path: a subject id in a log would outlive the
 * erasure it asked for. Handlers that log more get a child logger carrying the id
 * from `requestLogger(c)`; it is only built when asked for.
 */
export function requestContext(logger: Logger, metrics: Metrics): MiddlewareHandler<AppEnv> {
  const recorder = requestRecorder(logger, metrics);
  return async (c, next) => {
    const record = recorder.begin(
      c.env?.incoming?.headers ?? Object.fromEntries(c.req.raw.headers),
      c.req.method,
    );
    const { requestId } = record;
    c.set('requestId', requestId);
    c.set('baseLogger', logger);
    // On Node's response the header survives whatever response the app builds, errors
    // included; under `app.request()` it goes on the Hono response instead.
    const outgoing = c.env?.outgoing;
    if (outgoing) outgoing.setHeader('x-request-id', requestId);
    await context.with(record.context, next);
    if (!outgoing) c.header('x-request-id', requestId);
    const matched = routePath(c, -1);
    const route = matched && matched !== '*' && matched !== '/*' ? matched : 'unmatched';
    recorder.end(record, c.req.method, route, c.res.status);
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
