import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

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
  readonly eventsSkipped: Counter<'reason'>;
  readonly batchSize: Histogram;
  readonly insertDuration: Histogram;
  readonly endToEndLatency: Histogram;
  readonly breakerState: Gauge<'dependency'>;
  readonly breakerTransitions: Counter<'dependency' | 'to'>;
  readonly checkpointEvents: Gauge;
  readonly checkpointBytes: Gauge;
  readonly checkpointSegments: Gauge;
  readonly checkpointHealthy: Gauge;
  readonly checkpointSpilled: Counter;
  readonly checkpointReplayed: Counter;
  readonly checkpointCorruptRecords: Counter;
  readonly checkpointWriteFailures: Counter;
  readonly insertFailures: Counter<'kind'>;
  readonly retentionRowsArchived: Counter;
  readonly retentionBytesArchived: Counter;
  readonly retentionRowsDeleted: Counter;
  readonly retentionRowsAnonymized: Counter;
  readonly retentionPartitionsDropped: Counter;
  readonly retentionRowsRestored: Counter;
  readonly retentionPasses: Counter<'outcome'>;
  readonly retentionPassDuration: Histogram;
  readonly auditWriteFailures: Counter;
  readonly dsarRequests: Counter<'kind'>;
  readonly dsarRowsErased: Counter<'place'>;
  readonly exportRows: Counter<'source'>;
  readonly metadataDecryptFailures: Counter<'reason'>;

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
    this.eventsSkipped = new Counter({
      name: 'tributary_events_skipped_total',
      help: 'Events not stored on purpose: subject opted out (at ingest or by a worker) or being erased',
      labelNames: ['reason'],
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
    this.insertFailures = new Counter({
      name: 'tributary_insert_failures_total',
      help: 'Batch inserts that failed, by kind (unavailable: connection or server trouble; data: a row refused)',
      labelNames: ['kind'],
      registers,
    });
    this.breakerState = new Gauge({
      name: 'tributary_circuit_breaker_state',
      help: 'Circuit breaker state: 0 closed, 1 open, 2 half-open',
      labelNames: ['dependency'],
      registers,
    });
    this.breakerTransitions = new Counter({
      name: 'tributary_circuit_breaker_transitions_total',
      help: 'Circuit breaker state changes, by new state',
      labelNames: ['dependency', 'to'],
      registers,
    });
    this.checkpointEvents = new Gauge({
      name: 'tributary_checkpoint_backlog_events',
      help: 'Events in the disk checkpoint waiting to be replayed into PostgreSQL',
      registers,
    });
    this.checkpointBytes = new Gauge({
      name: 'tributary_checkpoint_backlog_bytes',
      help: 'Bytes of checkpoint segments waiting to be replayed',
      registers,
    });
    this.checkpointSegments = new Gauge({
      name: 'tributary_checkpoint_segments',
      help: 'Checkpoint segment files on disk',
      registers,
    });
    this.checkpointHealthy = new Gauge({
      name: 'tributary_checkpoint_healthy',
      help: '1 while the checkpoint accepts writes; 0 after a write or fsync failure (restart needed)',
      registers,
    });
    this.checkpointSpilled = new Counter({
      name: 'tributary_checkpoint_spilled_events_total',
      help: 'Events written to the disk checkpoint while PostgreSQL was unavailable',
      registers,
    });
    this.checkpointReplayed = new Counter({
      name: 'tributary_checkpoint_replayed_events_total',
      help: 'Events replayed from the disk checkpoint into PostgreSQL',
      registers,
    });
    this.checkpointCorruptRecords = new Counter({
      name: 'tributary_checkpoint_corrupt_records_total',
      help: 'Checkpoint records that failed their checksum and were skipped (segment quarantined)',
      registers,
    });
    this.checkpointWriteFailures = new Counter({
      name: 'tributary_checkpoint_write_failures_total',
      help: 'Checkpoint write or fsync failures',
      registers,
    });
    this.retentionRowsArchived = new Counter({
      name: 'tributary_retention_rows_archived_total',
      help: 'Rows written to verified archive objects by retention passes',
      registers,
    });
    this.retentionBytesArchived = new Counter({
      name: 'tributary_retention_archive_bytes_total',
      help: 'Bytes of verified archive objects written by retention passes',
      registers,
    });
    this.retentionRowsDeleted = new Counter({
      name: 'tributary_retention_rows_deleted_total',
      help: 'Archived rows deleted from PostgreSQL row by row (dropped partitions not included)',
      registers,
    });
    this.retentionRowsAnonymized = new Counter({
      name: 'tributary_retention_rows_anonymized_total',
      help: 'Rows whose user id was pseudonymised and PII metadata removed',
      registers,
    });
    this.retentionPartitionsDropped = new Counter({
      name: 'tributary_retention_partitions_dropped_total',
      help: 'Monthly partitions archived whole and dropped',
      registers,
    });
    this.retentionRowsRestored = new Counter({
      name: 'tributary_retention_rows_restored_total',
      help: 'Archived rows loaded back into PostgreSQL by restore',
      registers,
    });
    this.retentionPasses = new Counter({
      name: 'tributary_retention_passes_total',
      help: 'Retention passes run by this process, by outcome (completed, failed)',
      labelNames: ['outcome'],
      registers,
    });
    this.dsarRequests = new Counter({
      name: 'tributary_dsar_requests_total',
      help: 'Data-subject requests received, by kind (erasure, export)',
      labelNames: ['kind'],
      registers,
    });
    this.dsarRowsErased = new Counter({
      name: 'tributary_dsar_rows_erased_total',
      help: 'Events erased for data-subject requests, by place (database, buffer, checkpoint, archive)',
      labelNames: ['place'],
      registers,
    });
    this.exportRows = new Counter({
      name: 'tributary_dsar_export_rows_total',
      help: 'Events streamed by subject exports, by source (database, archive)',
      labelNames: ['source'],
      registers,
    });
    this.metadataDecryptFailures = new Counter({
      name: 'tributary_metadata_decrypt_failures_total',
      help: 'Encrypted metadata values read back unopened, by reason (unknown_key, bad_tag, malformed)',
      labelNames: ['reason'],
      registers,
    });
    // Both outcomes exist from the start, so increase() over them works from the first failure.
    for (const outcome of ['completed', 'failed']) this.retentionPasses.inc({ outcome }, 0);
    this.retentionPassDuration = new Histogram({
      name: 'tributary_retention_pass_duration_seconds',
      help: 'Duration of retention passes run by this process',
      buckets: [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600],
      registers,
    });
    this.auditWriteFailures = new Counter({
      name: 'tributary_audit_write_failures_total',
      help: 'Admin and compliance calls whose audit_log row could not be written (the call itself went on)',
      registers,
    });
  }
}
