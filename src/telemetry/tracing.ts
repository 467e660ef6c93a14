import { context, propagation, type Tracer, trace } from '@opentelemetry/api';

/** The tracer every component uses; a no-op until an SDK is registered. */
export function getTracer(): Tracer {
  return trace.getTracer('tributary');
}

/** W3C traceparent of the active span, or '' when nothing is traced. */
export function currentTraceparent(): string {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent ?? '';
}
