import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { labelledCounter } from './metric-labels.ts';

/**
 * Every metric Tributary exports (prefix `tributary_`), on an injected registry. Labelled
 * counters come from {@link labelledCounter}: every series of their known label values
 * (metric-labels.ts) exists at 0 from the start.
 */
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
  readonly eventsValidated: Counter;
  readonly schemaViolations: Counter<'service' | 'type' | 'action'>;
  readonly batchSize: Histogram;
  readonly insertDuration: Histogram;
  readonly endToEndLatency: Histogram;
  readonly breakerState: Gauge<'dependency'>;
  readonly breakerTransitions: Counter<'dependency' | 'to'>;
  readonly breakerOpens: Counter<'dependency' | 'trigger'>;
  readonly readsOnReplica: Gauge;
  readonly replicaLag: Gauge;
  readonly readTargetChanges: Counter<'to'>;
  readonly checkpointFreeBytes: Gauge;
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
  readonly liveListeners: Gauge;
  readonly liveRecordsPublished: Counter;
  readonly livePublishFailures: Counter;
  readonly liveFramesDropped: Counter;
  readonly sourceRecords: Counter<'source' | 'kind' | 'outcome'>;
  readonly sourceRuns: Counter<'source' | 'kind' | 'outcome'>;
  readonly sourceFailures: Gauge<'source' | 'kind'>;
  readonly sourceErrors: Counter<'source' | 'kind' | 'code'>;
  readonly sourceLastSuccess: Gauge<'source' | 'kind'>;
  readonly webhookDeliveries: Counter<'source' | 'outcome'>;
  readonly matEvents: Counter<'materialization'>;
  readonly matRows: Counter<'materialization' | 'table'>;
  readonly matErrors: Counter<'materialization'>;
  readonly matLag: Gauge<'materialization'>;
  readonly matConflicts: Counter<'materialization'>;

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
    this.eventsRejected = labelledCounter(
      'tributary_events_rejected_total',
      'Events refused, by reason (error code)',
      registers,
    );
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
    this.eventsSkipped = labelledCounter(
      'tributary_events_skipped_total',
      'Events not stored on purpose: subject opted out (at ingest or by a worker) or being erased',
      registers,
    );
    this.eventsValidated = new Counter({
      name: 'tributary_events_validated_total',
      help: 'Events checked by a dry run (POST /v1/events/validate): nothing stored, not counted as received',
      registers,
    });
    this.schemaViolations = new Counter({
      name: 'tributary_schema_violations_total',
      help: 'Events that failed their service’s tracking plan (ARCHITECTURE §14), by service, type (a registered one, else "(unregistered)") and action (warned: stored with its violations; rejected)',
      labelNames: ['service', 'type', 'action'],
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
    this.insertFailures = labelledCounter(
      'tributary_insert_failures_total',
      'Batch inserts that failed, by kind (unavailable: connection or server trouble; data: a row refused)',
      registers,
    );
    this.breakerState = new Gauge({
      name: 'tributary_circuit_breaker_state',
      help: 'Circuit breaker state: 0 closed, 1 open, 2 half-open',
      labelNames: ['dependency'],
      registers,
    });
    this.breakerTransitions = labelledCounter(
      'tributary_circuit_breaker_transitions_total',
      'Circuit breaker state changes, by new state',
      registers,
    );
    this.breakerOpens = labelledCounter(
      'tributary_circuit_breaker_opens_total',
      'Times the circuit breaker opened, by trigger (connection, slow_insert, error_rate)',
      registers,
    );
    this.readsOnReplica = new Gauge({
      name: 'tributary_db_reads_on_replica',
      help: 'Whether reads go to DATABASE_READ_URL (1) or to the primary (0)',
      registers,
    });
    this.replicaLag = new Gauge({
      name: 'tributary_db_replica_lag_seconds',
      help: "The read replica's replay lag at its last check (0 when it has replayed all it received)",
      registers,
    });
    this.readTargetChanges = labelledCounter(
      'tributary_db_read_target_changes_total',
      'Times reads moved between the replica and the primary, by where they went',
      registers,
    );
    this.checkpointFreeBytes = new Gauge({
      name: 'tributary_checkpoint_volume_free_bytes',
      help: "Free bytes on the checkpoint directory's volume (for unprivileged users)",
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
    this.retentionPasses = labelledCounter(
      'tributary_retention_passes_total',
      'Retention passes run by this process, by outcome (completed, failed)',
      registers,
    );
    this.dsarRequests = labelledCounter(
      'tributary_dsar_requests_total',
      'Data-subject requests received, by kind (erasure, export)',
      registers,
    );
    this.dsarRowsErased = labelledCounter(
      'tributary_dsar_rows_erased_total',
      'Events erased for data-subject requests, by place (database, buffer, checkpoint, archive, dead_letter)',
      registers,
    );
    this.exportRows = labelledCounter(
      'tributary_dsar_export_rows_total',
      'Events streamed by subject exports, by source (database, archive, dead_letter)',
      registers,
    );
    this.metadataDecryptFailures = labelledCounter(
      'tributary_metadata_decrypt_failures_total',
      'Encrypted metadata values read back unopened, by reason (unknown_key, bad_tag, malformed)',
      registers,
    );
    this.retentionPassDuration = new Histogram({
      name: 'tributary_retention_pass_duration_seconds',
      help: 'Duration of retention passes run by this process',
      buckets: [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600],
      registers,
    });
    this.liveListeners = new Gauge({
      name: 'tributary_live_listeners',
      help: 'Live-view (GET /v1/events/live) connections open on this process',
      registers,
    });
    this.liveRecordsPublished = new Counter({
      name: 'tributary_live_records_published_total',
      help: 'Ingest outcomes written to the live stream (only while someone listens)',
      registers,
    });
    this.livePublishFailures = new Counter({
      name: 'tributary_live_publish_failures_total',
      help: 'Flushes to the live stream that failed; their records are lost to the live view, never to ingest',
      registers,
    });
    this.liveFramesDropped = new Counter({
      name: 'tributary_live_frames_dropped_total',
      help: 'Live-view outcome frames not sent because the client read too slowly (its connection is then closed)',
      registers,
    });
    this.sourceRecords = new Counter({
      name: 'tributary_source_records_total',
      help: 'Records a source runner read, and what became of them: read, accepted, duplicate, rejected, skipped (opted out)',
      labelNames: ['source', 'kind', 'outcome'],
      registers,
    });
    this.sourceRuns = new Counter({
      name: 'tributary_source_runs_total',
      help: 'Source runs by outcome: ok, failed',
      labelNames: ['source', 'kind', 'outcome'],
      registers,
    });
    this.sourceFailures = new Gauge({
      name: 'tributary_source_consecutive_failures',
      help: 'Runs of a source that failed in a row (0 after a run that finished); its last error is in GET /v1/admin/sources/{id}',
      labelNames: ['source', 'kind'],
      registers,
    });
    this.sourceErrors = new Counter({
      name: 'tributary_source_errors_total',
      help: 'Failed source runs by the code of their error: source_unreachable, source_unauthorized, source_unreadable, source_rate_limited, backpressure, buffer_unavailable, …',
      labelNames: ['source', 'kind', 'code'],
      registers,
    });
    this.sourceLastSuccess = new Gauge({
      name: 'tributary_source_last_success_timestamp_seconds',
      help: 'When a source last finished a run (Unix time)',
      labelNames: ['source', 'kind'],
      registers,
    });
    this.webhookDeliveries = new Counter({
      name: 'tributary_webhook_deliveries_total',
      help: 'Webhook deliveries by outcome: accepted, duplicate, skipped, rejected, bad_signature, rate_limited',
      labelNames: ['source', 'outcome'],
      registers,
    });
    this.matEvents = new Counter({
      name: 'tributary_materialize_events_total',
      help: 'Events a materialisation applied (its feed batches and rebuilds)',
      labelNames: ['materialization'],
      registers,
    });
    this.matRows = new Counter({
      name: 'tributary_materialize_rows_total',
      help: 'Rows a materialisation wrote, by table (appended, upserted or recounted)',
      labelNames: ['materialization', 'table'],
      registers,
    });
    this.matErrors = new Counter({
      name: 'tributary_materialize_errors_total',
      help: 'Materialisation batches or rebuilds that failed (retried; the error is in GET /v1/admin/materializations/{name})',
      labelNames: ['materialization'],
      registers,
    });
    this.matLag = new Gauge({
      name: 'tributary_materialize_lag_seconds',
      help: 'Age of the oldest stored event a materialisation has not applied yet (0 when caught up)',
      labelNames: ['materialization'],
      registers,
    });
    this.matConflicts = new Counter({
      name: 'tributary_materialize_conflicts_total',
      help: 'Values that did not fit their typed column (kept in the jsonb beside it; per column in GET /v1/admin/materializations/{name})',
      labelNames: ['materialization'],
      registers,
    });
    this.auditWriteFailures = new Counter({
      name: 'tributary_audit_write_failures_total',
      help: 'Admin and compliance calls whose audit_log row could not be written (the call itself went on)',
      registers,
    });
  }
}
