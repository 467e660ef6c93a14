import {
  context,
  isSpanContextValid,
  type Link,
  propagation,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  type Tracer,
  trace,
} from '@opentelemetry/api';

/** The tracer every component uses; a no-op until {@link startTracing} registered an SDK. */
export function getTracer(): Tracer {
  return trace.getTracer('tributary');
}

/**
 * Starts the OpenTelemetry SDK when `OTEL_EXPORTER_OTLP_ENDPOINT` (or its traces variant) is
 * set, configured by the standard `OTEL_*` variables; otherwise tracing stays a no-op that
 * costs next to nothing. Only traces are exported: metrics go to Prometheus, logs to stdout.
 * Returns what flushes and stops it.
 */
export async function startTracing(role: string): Promise<() => Promise<void>> {
  const env = process.env;
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT && !env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return async () => {};
  env.OTEL_METRICS_EXPORTER ??= 'none';
  env.OTEL_LOGS_EXPORTER ??= 'none';
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const { resourceFromAttributes } = await import('@opentelemetry/resources');
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME ?? 'tributary',
    resource: resourceFromAttributes({ 'tributary.role': role }),
    instrumentations: [],
  });
  sdk.start();
  return () => sdk.shutdown();
}

/** W3C traceparent of the active span, or '' when nothing is traced. */
export function currentTraceparent(): string {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent ?? '';
}

/** Trace id of the active span for log lines, or undefined when nothing is traced. */
export function currentTraceId(): string | undefined {
  const span = trace.getActiveSpan();
  return span?.isRecording() ? span.spanContext().traceId : undefined;
}

/** The span context a stored traceparent names, for a span link; undefined when there is none. */
export function spanContextOf(traceparent: string | undefined): SpanContext | undefined {
  if (!traceparent) return undefined;
  const ctx = propagation.extract(ROOT_CONTEXT, { traceparent });
  return trace.getSpanContext(ctx);
}

/** Continues the trace of incoming request headers (W3C traceparent), if any. */
export function extractContext(headers: Record<string, string | string[] | undefined>) {
  return propagation.extract(ROOT_CONTEXT, headers);
}

/** Links to at most `max` traceparents (OpenTelemetry keeps 128 links per span by default). */
export function linksTo(traceparents: Iterable<string | undefined>, max = 128): Link[] {
  const links: Link[] = [];
  for (const tp of traceparents) {
    if (links.length >= max) break;
    const sc = spanContextOf(tp);
    if (sc) links.push({ context: sc });
  }
  return links;
}

/**
 * The active span when it is one the sampler left out (a request not sampled): its children
 * would be left out too (the sampler follows the parent), so none is made for them — no ids
 * drawn, no context switched. Undefined otherwise.
 */
function unsampledParent(): Span | undefined {
  const parent = trace.getActiveSpan();
  if (!parent || parent.isRecording()) return undefined;
  const ctx = parent.spanContext();
  return isSpanContextValid(ctx) && (ctx.traceFlags & TraceFlags.SAMPLED) === 0 ? parent : undefined;
}

/** A new span under the active one, ended by the caller; within a request not sampled, that request's span. */
export function childSpan(name: string, attributes?: Record<string, string | number | boolean>): Span {
  return unsampledParent() ?? getTracer().startSpan(name, attributes ? { attributes } : {});
}

/**
 * Runs `fn` inside a new active span that ends when it settles; an error marks the span
 * and is rethrown. Within a request not sampled, `fn` runs in that request's span as it is.
 */
export async function inSpan<T>(
  name: string,
  opts: { kind?: SpanKind; links?: Link[]; attributes?: Record<string, string | number | boolean> },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const skipped = unsampledParent();
  if (skipped) return fn(skipped);
  return getTracer().startActiveSpan(name, opts, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: String((err as Error)?.message ?? err) });
      throw err;
    } finally {
      span.end();
    }
  });
}

export { SpanKind, SpanStatusCode };
