// Preloaded (node --import) into the "without metrics" API of `ab-serve.ts --compare metrics`:
// every prom-client recording call becomes a no-op, so the run measures what recording
// metrics on the hot path costs. Registration and /metrics rendering are left alone.
import promClient from 'prom-client';

const noop = () => {};
const child = { inc: noop, dec: noop, set: noop, observe: noop, startTimer: () => noop, reset: noop };
for (const Metric of [promClient.Counter, promClient.Gauge, promClient.Histogram, promClient.Summary]) {
  // Counters and histograms pick inc/observe per instance from these in their constructors.
  for (const method of [
    'inc',
    'dec',
    'set',
    'observe',
    'reset',
    'incWithoutExemplar',
    'incWithExemplar',
    'observeWithoutExemplar',
    'observeWithExemplar',
  ]) {
    if (typeof Metric.prototype[method] === 'function') Metric.prototype[method] = noop;
  }
  if (typeof Metric.prototype.startTimer === 'function') Metric.prototype.startTimer = () => noop;
  Metric.prototype.labels = () => child;
}
