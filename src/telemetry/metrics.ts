import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/** Every metric Tributary exports (prefix `tributary_`), on an injected registry. */
export class Metrics {
  readonly registry: Registry;
  readonly httpDuration: Histogram<'route' | 'method' | 'status'>;
  readonly eventsReceived: Counter;
  readonly eventsAccepted: Counter;
  readonly eventsDuplicate: Counter;
  readonly eventsRejected: Counter<'reason'>;
  readonly eventsPersisted: Counter;
  readonly eventsDeadLettered: Counter;
  readonly batchSize: Histogram;
  readonly insertDuration: Histogram;
  readonly endToEndLatency: Histogram;

  constructor(registry = new Registry(), opts: { processMetrics?: boolean } = {}) {
    this.registry = registry;
    if (opts.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'tributary_' });
    const registers = [registry];
    this.httpDuration = new Histogram({
      name: 'tributary_http_request_duration_seconds',
      help: 'HTTP request duration by route, method and status',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.eventsReceived = new Counter({
      name: 'tributary_events_received_total',
      help: 'Events received by the API, valid or not',
      registers,
    });
    this.eventsAccepted = new Counter({
      name: 'tributary_events_accepted_total',
      help: 'Events written to the buffer',
      registers,
    });
    this.eventsDuplicate = new Counter({
      name: 'tributary_events_duplicate_total',
      help: 'Events answered "duplicate": their id was accepted within the dedupe window',
      registers,
    });
    this.eventsRejected = new Counter({
      name: 'tributary_events_rejected_total',
      help: 'Events refused, by reason (error code)',
      labelNames: ['reason'],
      registers,
    });
    this.eventsPersisted = new Counter({
      name: 'tributary_events_persisted_total',
      help: 'Rows committed to PostgreSQL by workers',
      registers,
    });
    this.eventsDeadLettered = new Counter({
      name: 'tributary_events_dead_lettered_total',
      help: 'Buffer entries moved to the dead-letter stream',
      registers,
    });
    this.batchSize = new Histogram({
      name: 'tributary_batch_size',
      help: 'Entries per worker batch',
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000],
      registers,
    });
    this.insertDuration = new Histogram({
      name: 'tributary_insert_duration_seconds',
      help: 'Duration of one batch insert into PostgreSQL',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.endToEndLatency = new Histogram({
      name: 'tributary_end_to_end_latency_seconds',
      help: 'Time from receipt by the API to commit in PostgreSQL',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
      registers,
    });
  }
}
