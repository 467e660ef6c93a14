import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

/**
 * Events, partitioned by RANGE on `occurred_at`, one partition per UTC month
 * (`events_YYYY_MM`) plus `events_default`. drizzle-kit cannot express partitioning:
 * the CREATE TABLE in drizzle/0000_init.sql is edited by hand, and the partitions are
 * made by store/partitions.ts.
 */
export const events = pgTable(
  'events',
  {
    id: uuid('id').notNull(),
    occurredAt: timestamp('occurred_at', { withTimezone: true, mode: 'date' }).notNull(),
    receivedAt: timestamp('received_at', { withTimezone: true, mode: 'date' }).notNull(),
    service: text('service').notNull(),
    type: text('type').notNull(),
    userId: text('user_id'),
    message: text('message'),
    metadata: jsonb('metadata').$type<Record<string, unknown>>(),
    /** Set by the retention pass once `user_id` is pseudonymised and PII keys removed. */
    anonymized: boolean('anonymized').notNull().default(false),
    /** The API key that wrote the row (NULL for rows written before keys were recorded). */
    keyId: text('key_id'),
    /** Segment's `anonymousId` (§12): a subject before it is known, found by compliance. */
    anonymousId: text('anonymous_id'),
    /**
     * Its tracking-plan violations when it was stored under `warn` (§14): `[{path, code,
     * message}]`, paths and messages from the schema, never the event's values. NULL: none.
     */
    violations: jsonb('violations').$type<{ path: string; code: string; message: string }[]>(),
  },
  (t) => [
    // (occurred_at, id) rather than (id, occurred_at): same uniqueness, but inserts land at the
    // right edge of the index instead of at random UUID positions, and a backward scan of it
    // serves newest-first pagination with no extra index. `service` last: ids are unique per
    // service, so one service's id can never make another's event a duplicate (§11).
    primaryKey({ columns: [t.occurredAt, t.id, t.service] }),
    // In the listing's order (id breaks ties), so a rare service's newest events are found
    // directly, not by filtering the primary key past a burst of another service's.
    index('events_service_occurred_at_idx').on(t.service, t.occurredAt, t.id),
    // A subject's events in time order: erasure finds them, export pages through them by key.
    index('events_user_id_occurred_at_idx').on(t.userId, t.occurredAt, t.id),
    // The same for a subject known only by its anonymousId (most rows have none).
    index('events_anonymous_id_occurred_at_idx')
      .on(t.anonymousId, t.occurredAt, t.id)
      .where(sql`${t.anonymousId} IS NOT NULL`),
    // Events of a type, newest first (`GET /v1/events?type=`, alone or with a service): in the
    // listing's order, so a type with few events is not found by scanning every newer row. With
    // a service too, its entries carry the service: an index on both measured no faster (1.8 ms
    // at 10M rows for a rare service and type either way) and cost ingest 8 % more.
    index('events_type_occurred_at_idx').on(t.type, t.occurredAt, t.id, t.service),
    // Events stored with tracking-plan violations (`?violations=true`): few, so a small index.
    index('events_violations_occurred_at_idx')
      .on(t.occurredAt, t.id, t.service)
      .where(sql`${t.violations} IS NOT NULL`),
    index('events_received_at_brin').using('brin', t.receivedAt),
    // Rows still to anonymise: small once a pass has caught up, so no pass scans old months.
    index('events_not_anonymized_idx').on(t.occurredAt).where(sql`NOT ${t.anonymized}`),
  ],
);

/** API keys: only the SHA-256 of a key is stored. */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    name: text('name').notNull(),
    keyHash: text('key_hash').notNull(),
    /** First characters of the key, to tell keys apart in listings. */
    keyPrefix: text('key_prefix').notNull(),
    scopes: text('scopes').array().notNull(),
    /** Services the key may write and read; empty: every service (operators' keys). */
    services: text('services').array().notNull().default(sql`'{}'`),
    rateLimitPerMinute: integer('rate_limit_per_minute'),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
    /** Set when the key was rotated: it keeps working until then (the overlap), then stops. */
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    uniqueIndex('api_keys_key_hash_idx').on(t.keyHash),
    index('api_keys_active_idx').on(t.createdAt).where(sql`${t.revokedAt} IS NULL`),
  ],
);

export type ApiKeyRow = typeof apiKeys.$inferSelect;

/**
 * One retention pass: who ran it, its progress (heartbeat) and what each step did. At most
 * one row is `running` (a partial unique index); a holder that stops heartbeating is
 * marked `abandoned` by the next pass, so a crashed runner never blocks retention.
 */
export const retentionRuns = pgTable(
  'retention_runs',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    trigger: text('trigger').notNull(),
    status: text('status').notNull(),
    holder: text('holder').notNull(),
    startedAt: timestamp('started_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    heartbeatAt: timestamp('heartbeat_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    finishedAt: timestamp('finished_at', { withTimezone: true, mode: 'date' }),
    rowsArchived: bigint('rows_archived', { mode: 'number' }).notNull().default(0),
    bytesArchived: bigint('bytes_archived', { mode: 'number' }).notNull().default(0),
    rowsDeleted: bigint('rows_deleted', { mode: 'number' }).notNull().default(0),
    rowsAnonymized: bigint('rows_anonymized', { mode: 'number' }).notNull().default(0),
    partitionsDropped: text('partitions_dropped').array().notNull().default(sql`'{}'`),
    steps: jsonb('steps').$type<unknown[]>().notNull().default(sql`'[]'::jsonb`),
    error: text('error'),
  },
  (t) => [
    uniqueIndex('retention_runs_one_running_idx').on(t.status).where(sql`${t.status} = 'running'`),
    index('retention_runs_started_at_idx').on(t.startedAt.desc()),
  ],
);

/**
 * Archive objects, one per (month, service) unit of a pass. Status: `writing` → `verified`
 * (read back: size, SHA-256, row count) → `complete` (its rows deleted or their partition
 * dropped); `restored` while its rows are back in PostgreSQL on hold.
 */
export const archives = pgTable(
  'archives',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    runId: uuid('run_id'),
    month: text('month').notNull(),
    service: text('service').notNull(),
    /** `events` for rows past retention in attached partitions, else the detached partition's table. */
    source: text('source').notNull(),
    rangeFrom: timestamp('range_from', { withTimezone: true, mode: 'date' }).notNull(),
    rangeTo: timestamp('range_to', { withTimezone: true, mode: 'date' }).notNull(),
    objectKey: text('object_key').notNull(),
    manifestKey: text('manifest_key').notNull(),
    status: text('status').notNull(),
    rowCount: bigint('row_count', { mode: 'number' }),
    bytes: bigint('bytes', { mode: 'number' }),
    sha256: text('sha256'),
    minOccurredAt: timestamp('min_occurred_at', { withTimezone: true, mode: 'date' }),
    maxOccurredAt: timestamp('max_occurred_at', { withTimezone: true, mode: 'date' }),
    schemaVersion: integer('schema_version').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    verifiedAt: timestamp('verified_at', { withTimezone: true, mode: 'date' }),
    completedAt: timestamp('completed_at', { withTimezone: true, mode: 'date' }),
    restoredAt: timestamp('restored_at', { withTimezone: true, mode: 'date' }),
    holdUntil: timestamp('hold_until', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    uniqueIndex('archives_object_key_idx').on(t.objectKey),
    index('archives_month_service_idx').on(t.month, t.service),
    index('archives_open_idx').on(t.status).where(sql`${t.status} <> 'complete'`),
  ],
);

/** Subjects who opted out: their events are answered `skipped` at ingest and never stored. */
export const optOuts = pgTable('opt_outs', {
  userId: text('user_id').primaryKey(),
  keyId: text('key_id'),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  /**
   * The subject whose opt-out put this row here because the two ids are linked (§12);
   * NULL when the subject opted out itself. Opting `via` back in removes the row.
   */
  via: text('via'),
});

/**
 * Links between subject ids (§12): an `alias` event links its `metadata.previousId` to its
 * `userId` (and its `anonymousId`, if any); any event carrying both a `userId` and an
 * `anonymousId` links those (`via` says which rule). Written by the workers as batches are
 * persisted; compliance follows them transitively, so erasing or exporting one id covers
 * every id linked to it. One row per pair, found from either end.
 */
export const subjectLinks = pgTable(
  'subject_links',
  {
    fromId: text('from_id').notNull(),
    toId: text('to_id').notNull(),
    via: text('via').notNull(),
    /** The key that wrote the event that made the link. */
    keyId: text('key_id'),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.fromId, t.toId] }), index('subject_links_to_idx').on(t.toId, t.fromId)],
);

/**
 * Data-subject requests (erasure). Counts per place are what the job removed; `progress`
 * records where a resumed job picks up (the archive objects already rewritten).
 */
export const dsarRequests = pgTable(
  'dsar_requests',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    kind: text('kind').notNull(),
    userId: text('user_id').notNull(),
    status: text('status').notNull(),
    keyId: text('key_id'),
    requestedAt: timestamp('requested_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    startedAt: timestamp('started_at', { withTimezone: true, mode: 'date' }),
    heartbeatAt: timestamp('heartbeat_at', { withTimezone: true, mode: 'date' }),
    finishedAt: timestamp('finished_at', { withTimezone: true, mode: 'date' }),
    deletedDatabase: bigint('deleted_database', { mode: 'number' }).notNull().default(0),
    deletedBuffer: bigint('deleted_buffer', { mode: 'number' }).notNull().default(0),
    deletedCheckpoint: bigint('deleted_checkpoint', { mode: 'number' }).notNull().default(0),
    deletedArchive: bigint('deleted_archive', { mode: 'number' }).notNull().default(0),
    archivesRewritten: integer('archives_rewritten').notNull().default(0),
    progress: jsonb('progress').$type<Record<string, unknown>>().notNull().default(sql`'{}'::jsonb`),
    error: text('error'),
  },
  (t) => [
    index('dsar_requests_open_idx').on(t.requestedAt).where(sql`${t.status} IN ('pending', 'running')`),
    index('dsar_requests_user_idx').on(t.userId),
  ],
);

/**
 * Every admin and compliance call: who (key id), what, when, from where, outcome.
 * Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE (drizzle/0002), and the
 * service's role should hold only INSERT and SELECT on it.
 */
export const auditLog = pgTable(
  'audit_log',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: timestamp('at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    keyId: text('key_id'),
    action: text('action').notNull(),
    method: text('method').notNull(),
    path: text('path').notNull(),
    target: text('target'),
    ip: text('ip'),
    status: integer('status').notNull(),
    outcome: text('outcome').notNull(),
    requestId: text('request_id'),
    details: jsonb('details').$type<Record<string, unknown>>(),
  },
  (t) => [index('audit_log_at_idx').on(t.at.desc()), index('audit_log_key_idx').on(t.keyId)],
);

/**
 * Tracking-plan schemas (ARCHITECTURE §14): every version of each (service, type)'s JSON
 * Schema, never rewritten. The current one is the highest version, unless that version was
 * deleted (`deleted_at`); a later PUT takes the next number, so a version always means one schema.
 */
export const eventSchemas = pgTable(
  'event_schemas',
  {
    service: text('service').notNull(),
    type: text('type').notNull(),
    version: integer('version').notNull(),
    schema: jsonb('schema').$type<Record<string, unknown>>().notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    deletedAt: timestamp('deleted_at', { withTimezone: true, mode: 'date' }),
    /** The key that wrote (or deleted) it. */
    keyId: text('key_id'),
  },
  (t) => [primaryKey({ columns: [t.service, t.type, t.version] })],
);

/** A service's tracking-plan settings (§14); a service with no row gets `warn` / `allow`. */
export const planSettings = pgTable('plan_settings', {
  service: text('service').primaryKey(),
  mode: text('mode').notNull(),
  unknownTypes: text('unknown_types').notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
});

/**
 * Sources (ARCHITECTURE §15): where a `work` process pulls events from (a PostgreSQL table, an
 * HTTP API) or where a third party pushes them (a webhook). `settings` holds the configuration
 * without its secrets; `secrets` the connection string, token or signing secret, sealed
 * (`enc:v1:`, AES-256-GCM under METADATA_ENCRYPTION_KEYS' first key, the source id as
 * associated data). `position` is the committed cursor, written only after its events are
 * buffered, by the lease holder only. The lease (`lease_holder` until `lease_expires_at`)
 * admits one runner per source across every process; a crashed holder's lease runs out.
 */
export const sources = pgTable(
  'sources',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    kind: text('kind').notNull(),
    name: text('name').notNull(),
    service: text('service').notNull(),
    settings: jsonb('settings').$type<Record<string, unknown>>().notNull(),
    secrets: text('secrets'),
    paused: boolean('paused').notNull().default(false),
    position: jsonb('position').$type<Record<string, unknown>>(),
    rowsRead: bigint('rows_read', { mode: 'number' }).notNull().default(0),
    eventsAccepted: bigint('events_accepted', { mode: 'number' }).notNull().default(0),
    eventsDuplicate: bigint('events_duplicate', { mode: 'number' }).notNull().default(0),
    eventsRejected: bigint('events_rejected', { mode: 'number' }).notNull().default(0),
    eventsSkipped: bigint('events_skipped', { mode: 'number' }).notNull().default(0),
    /** The last record refused (validation or tracking plan): its code, message and details, never its values. */
    lastRejection: jsonb('last_rejection').$type<Record<string, unknown>>(),
    lastRunAt: timestamp('last_run_at', { withTimezone: true, mode: 'date' }),
    lastSuccessAt: timestamp('last_success_at', { withTimezone: true, mode: 'date' }),
    lastError: text('last_error'),
    lastErrorAt: timestamp('last_error_at', { withTimezone: true, mode: 'date' }),
    /** Runs failed in a row: the backoff grows with it; 0 after a run that finished. */
    failures: integer('failures').notNull().default(0),
    nextRunAt: timestamp('next_run_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    leaseHolder: text('lease_holder'),
    leaseExpiresAt: timestamp('lease_expires_at', { withTimezone: true, mode: 'date' }),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('sources_name_idx').on(t.name)],
);

export * from './schema-materialize.ts';
