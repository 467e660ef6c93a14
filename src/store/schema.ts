import { sql } from 'drizzle-orm';
import {
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
  },
  (t) => [
    // (occurred_at, id) rather than (id, occurred_at): same uniqueness, but inserts land at the
    // right edge of the index instead of at random UUID positions, and a backward scan of it
    // serves newest-first pagination with no extra index.
    primaryKey({ columns: [t.occurredAt, t.id] }),
    index('events_service_occurred_at_idx').on(t.service, t.occurredAt.desc()),
    index('events_user_id_idx').on(t.userId),
    index('events_received_at_brin').using('brin', t.receivedAt),
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
    rateLimitPerMinute: integer('rate_limit_per_minute'),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    uniqueIndex('api_keys_key_hash_idx').on(t.keyHash),
    index('api_keys_active_idx').on(t.createdAt).where(sql`${t.revokedAt} IS NULL`),
  ],
);

export type ApiKeyRow = typeof apiKeys.$inferSelect;
