import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  customType,
  date,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';

/** PostgreSQL's 64-bit transaction id (`pg_current_xact_id()`), carried as its decimal text. */
const xid8 = customType<{ data: string }>({ dataType: () => 'xid8' });

/**
 * The feed of materialisations (ARCHITECTURE §17): one row per event row the worker actually
 * inserted, written by the same statement, with the inserting transaction's id. A reader
 * takes only rows whose transaction is below its snapshot's xmin (finished, so committed or
 * rolled back), in (xid, seq) order: a transaction still in flight can never be skipped.
 * Rows every materialisation has passed are deleted by the runners.
 */
export const eventFeed = pgTable(
  'event_feed',
  {
    xid: xid8('xid').notNull().default(sql`pg_current_xact_id()`),
    seq: bigserial('seq', { mode: 'number' }).notNull(),
    occurredAt: timestamp('occurred_at', { withTimezone: true, mode: 'date' }).notNull(),
    id: uuid('id').notNull(),
    service: text('service').notNull(),
  },
  (t) => [primaryKey({ columns: [t.xid, t.seq] })],
);

/** A materialisation (§17): what it builds, where, and how far it has read the feed. */
export const materializations = pgTable('materializations', {
  name: text('name').primaryKey(),
  /** The validated `PUT` body: destination, services, eventTables, promoteMaxColumns. */
  spec: jsonb('spec').$type<Record<string, unknown>>().notNull(),
  /** `building` (first build or a rebuild under way), `running`, `failed` (last batch failed; retried). */
  state: text('state').notNull().default('building'),
  /** Feed position: every feed row at or after (cursor_xid, cursor_seq) is still to be applied. */
  cursorXid: xid8('cursor_xid'),
  cursorSeq: bigint('cursor_seq', { mode: 'number' }).notNull().default(0),
  /** Asked for by `POST …/rebuild` (or a new spec): the runner rebuilds before its next batch. */
  rebuildRequestedAt: timestamp('rebuild_requested_at', { withTimezone: true, mode: 'date' }).defaultNow(),
  /**
   * The first archived month (`YYYY-MM`) the requested rebuild also reads back from the archive
   * (`POST …/rebuild {"archivedFrom"}`); null: `events` only.
   */
  rebuildArchivedFrom: text('rebuild_archived_from'),
  /** The same, of the last rebuild done: its tables hold the archived months from it on. */
  lastRebuildArchivedFrom: text('last_rebuild_archived_from'),
  /** The newest event time applied, and when the last batch was committed (lag). */
  appliedUntil: timestamp('applied_until', { withTimezone: true, mode: 'date' }),
  lastBatchAt: timestamp('last_batch_at', { withTimezone: true, mode: 'date' }),
  lastRebuildAt: timestamp('last_rebuild_at', { withTimezone: true, mode: 'date' }),
  eventsApplied: bigint('events_applied', { mode: 'number' }).notNull().default(0),
  lastError: text('last_error'),
  lastErrorAt: timestamp('last_error_at', { withTimezone: true, mode: 'date' }),
  failures: integer('failures').notNull().default(0),
  leaseHolder: text('lease_holder'),
  leaseExpiresAt: timestamp('lease_expires_at', { withTimezone: true, mode: 'date' }),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
});

/**
 * The catalog (§17): every typed column of every table of a materialisation, with the JSON
 * path it projects, its type as created and the widest type seen (a rebuild creates that),
 * and the values that did not fit (counted, with one event id as a sample).
 */
export const matColumns = pgTable(
  'mat_columns',
  {
    materialization: text('materialization')
      .notNull()
      .references(() => materializations.name, { onDelete: 'cascade' }),
    tableName: text('table_name').notNull(),
    columnName: text('column_name').notNull(),
    path: text('path').array().notNull(),
    kind: text('kind').notNull(),
    wanted: text('wanted').notNull(),
    conflicts: bigint('conflicts', { mode: 'number' }).notNull().default(0),
    conflictSample: uuid('conflict_sample'),
  },
  (t) => [primaryKey({ columns: [t.materialization, t.tableName, t.columnName] })],
);

/** Which track event names have a table of their own, and its name (§17 `eventTables`). */
export const matEventTables = pgTable(
  'mat_event_tables',
  {
    materialization: text('materialization')
      .notNull()
      .references(() => materializations.name, { onDelete: 'cascade' }),
    eventName: text('event_name').notNull(),
    tableName: text('table_name').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.materialization, t.eventName] }),
    index('mat_event_tables_table_idx').on(t.materialization, t.tableName),
  ],
);

/**
 * Days whose `daily_counts` a feed batch touched and that are not recounted yet: recounted
 * together, at most every couple of seconds and whenever the feed is drained, rather than
 * after every batch (a day's recount reads all its events).
 */
export const matDirtyDays = pgTable(
  'mat_dirty_days',
  {
    materialization: text('materialization')
      .notNull()
      .references(() => materializations.name, { onDelete: 'cascade' }),
    service: text('service').notNull(),
    day: date('day', { mode: 'string' }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.materialization, t.service, t.day] })],
);
