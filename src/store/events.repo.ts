import { and, desc, eq, gte, inArray, isNotNull, isNull, lt, lte, or, type SQL, sql } from 'drizzle-orm';
import type pg from 'pg';
import { parseRfc3339 } from '../events/rfc3339.ts';
import type { Db } from './db.ts';
import { events } from './schema.ts';

/**
 * Inserts a batch in one statement. `eventsJson` is a JSON array of normalised events
 * exactly as buffered (their `e` fields joined), so nothing is re-serialised per row:
 * PostgreSQL parses it once as jsonb and unpacks it with jsonb_array_elements (with `json`,
 * every `->>` parsed the row's text again: 1.4–1.7× slower here). drizzle cannot express this insert.
 * Rows already stored (same occurred_at, id and service) are skipped. The rows inserted are
 * also written to the materialisations' feed (`event_feed`, §17) by the same statement, so
 * the feed holds exactly the committed rows. Returns rows inserted.
 */
export async function insertEventsJson(pool: pg.Pool, eventsJson: string): Promise<number> {
  const result = await pool.query(
    `WITH inserted AS (
       INSERT INTO events (id, occurred_at, received_at, service, type, user_id, message, metadata, key_id, anonymous_id,
                           violations)
       SELECT (r->>'id')::uuid, (r->>'timestamp')::timestamptz, (r->>'receivedAt')::timestamptz,
              r->>'service', r->>'type', r->>'userId', r->>'message', r->'metadata', r->>'keyId',
              r->>'anonymousId', r->'violations'
         FROM jsonb_array_elements($1::jsonb) AS r
       ON CONFLICT DO NOTHING
       RETURNING occurred_at, id, service)
     INSERT INTO event_feed (occurred_at, id, service) SELECT occurred_at, id, service FROM inserted`,
    [eventsJson],
  );
  return result.rowCount ?? 0;
}

export interface EventQuery {
  service?: string;
  /** Only these services' events (a key bound to services); undefined: every service. */
  services?: readonly string[];
  type?: string;
  userId?: string;
  anonymousId?: string;
  /** true: only events stored with tracking-plan violations (`warn`); false: only those without. */
  violations?: boolean;
  from?: Date;
  to?: Date;
  limit: number;
  /**
   * Keyset position: rows strictly older than this (occurred_at, id, service). Ids are unique
   * per service only (§11), so two rows can share (occurred_at, id); `service` is absent in
   * cursors handed out before that, which go on working as they did.
   */
  after?: EventCursor;
}

export interface StoredEvent {
  id: string;
  service: string;
  type: string;
  timestamp: string;
  receivedAt: string;
  userId: string | null;
  /** Segment's `anonymousId` (§12); null when the event carried none. */
  anonymousId: string | null;
  message: string | null;
  metadata: Record<string, unknown> | null;
  /** The key that wrote it; null for rows from before keys were recorded. */
  keyId: string | null;
  /** Its tracking-plan violations when stored under `warn` (§14); null: none. */
  violations: { path: string; code: string; message: string }[] | null;
}

/** Exact (microsecond) occurred_at text, so cursors never skip or repeat a row. */
const occurredAtText = sql<string>`to_char(${events.occurredAt} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** Newest first, keyset-paginated on (occurred_at, id, service), the primary key. Returns one row more than `limit` when there are more. */
export async function queryEvents(db: Db, q: EventQuery): Promise<{ rows: StoredEvent[]; cursor?: string }> {
  const where: (SQL | undefined)[] = [
    q.service !== undefined ? eq(events.service, q.service) : undefined,
    q.services !== undefined ? inArray(events.service, [...q.services]) : undefined,
    q.type !== undefined ? eq(events.type, q.type) : undefined,
    q.userId !== undefined ? eq(events.userId, q.userId) : undefined,
    q.anonymousId !== undefined ? eq(events.anonymousId, q.anonymousId) : undefined,
    q.violations === undefined
      ? undefined
      : q.violations
        ? isNotNull(events.violations)
        : isNull(events.violations),
    q.from ? gte(events.occurredAt, q.from) : undefined,
    q.to ? lte(events.occurredAt, q.to) : undefined,
  ];
  if (q.after) {
    const at = sql`${q.after.occurredAt}::timestamptz`;
    const sameId =
      q.after.service === undefined
        ? undefined
        : and(eq(events.id, q.after.id), lt(events.service, q.after.service));
    where.push(
      or(lt(events.occurredAt, at), and(eq(events.occurredAt, at), or(lt(events.id, q.after.id), sameId))),
    );
  }
  const rows = await db
    .select({
      id: events.id,
      service: events.service,
      type: events.type,
      occurredAt: occurredAtText,
      receivedAt: events.receivedAt,
      userId: events.userId,
      anonymousId: events.anonymousId,
      message: events.message,
      metadata: events.metadata,
      keyId: events.keyId,
      violations: events.violations,
    })
    .from(events)
    .where(and(...where))
    .orderBy(desc(events.occurredAt), desc(events.id), desc(events.service))
    .limit(q.limit + 1);

  const page = rows.slice(0, q.limit);
  const last = page[page.length - 1];
  const out: StoredEvent[] = page.map((r) => ({
    id: r.id,
    service: r.service,
    type: r.type,
    timestamp: isoMillis(r.occurredAt),
    receivedAt: r.receivedAt.toISOString(),
    userId: r.userId,
    anonymousId: r.anonymousId,
    message: r.message,
    metadata: r.metadata ?? null,
    keyId: r.keyId,
    violations: r.violations ?? null,
  }));
  if (rows.length > q.limit && last) {
    return {
      rows: out,
      cursor: encodeCursor({ occurredAt: last.occurredAt, id: last.id, service: last.service }),
    };
  }
  return { rows: out };
}

/** `…T12:00:00.123000Z` → `…T12:00:00.123Z` (the form events are accepted in), keeping any µs. */
function isoMillis(micros: string): string {
  return micros.endsWith('000Z') ? `${micros.slice(0, -4)}Z` : micros;
}

/** A position in the newest-first listing of events (see {@link EventQuery.after}). */
export interface EventCursor {
  occurredAt: string;
  id: string;
  service?: string;
}

export function encodeCursor(c: EventCursor): string {
  const text = c.service === undefined ? `${c.occurredAt}|${c.id}` : `${c.occurredAt}|${c.id}|${c.service}`;
  return Buffer.from(text).toString('base64url');
}

const SERVICE_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Decodes a cursor made by {@link encodeCursor}, exactly: undefined for anything else (extra
 * fields, a day that does not exist or a year PostgreSQL cannot hold, any other encoding of
 * the same text), so a tampered cursor is refused rather than sent to the database. Cursors
 * without a service (handed out before ids were unique per service only) are still taken.
 */
export function decodeCursor(cursor: string): EventCursor | undefined {
  const parts = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  const [occurredAt, id, service] = parts;
  if (parts.length < 2 || parts.length > 3 || !occurredAt || !id) return undefined;
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/.test(occurredAt)) return undefined;
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) return undefined;
  if (service !== undefined && !SERVICE_NAME.test(service)) return undefined;
  const decoded: EventCursor = service === undefined ? { occurredAt, id } : { occurredAt, id, service };
  if (parseRfc3339(occurredAt) === undefined || encodeCursor(decoded) !== cursor) return undefined;
  return decoded;
}

/** A row still to anonymise: occurred_at as text (a JS Date would round its microseconds away). */
export interface RowToAnonymize {
  ts: string;
  id: string;
  service: string;
  userId: string | null;
  anonymousId: string | null;
}

/** The oldest `limit` rows not yet anonymised that occurred before `cutoff`. */
export async function rowsToAnonymize(pool: pg.Pool, cutoff: Date, limit: number): Promise<RowToAnonymize[]> {
  const { rows } = await pool.query<{
    ts: string;
    id: string;
    service: string;
    user_id: string | null;
    anonymous_id: string | null;
  }>(
    `SELECT occurred_at::text AS ts, id, service, user_id, anonymous_id FROM events
      WHERE NOT anonymized AND occurred_at < $1 ORDER BY occurred_at LIMIT $2`,
    [cutoff, limit],
  );
  return rows.map((r) => ({
    ts: r.ts,
    id: r.id,
    service: r.service,
    userId: r.user_id,
    anonymousId: r.anonymous_id,
  }));
}

/**
 * Writes each row's pseudonyms in place of its user id and anonymous id, removes `piiKeys` from its metadata
 * and marks it anonymised, in one statement (unnest of the keys: drizzle cannot express
 * it). Rows anonymised meanwhile are left alone. `rows` must be in occurred_at order: its
 * first and last bound the statement to the partitions the batch touches.
 * @returns the rows changed.
 */
export async function anonymizeEvents(
  pool: pg.Pool,
  rows: readonly {
    ts: string;
    id: string;
    service: string;
    pseudonym: string | null;
    anonymousPseudonym: string | null;
  }[],
  piiKeys: readonly string[],
): Promise<number> {
  const res = await pool.query(
    `UPDATE events e SET user_id = u.pseudonym, anonymous_id = u.anonymous, metadata = e.metadata - $4::text[],
            anonymized = true
       FROM unnest($1::timestamptz[], $2::uuid[], $3::text[], $7::text[], $8::text[])
            AS u(ts, id, pseudonym, service, anonymous)
      WHERE e.occurred_at = u.ts AND e.id = u.id AND e.service = u.service AND NOT e.anonymized
        AND e.occurred_at BETWEEN $5::timestamptz AND $6::timestamptz`,
    [
      rows.map((r) => r.ts),
      rows.map((r) => r.id),
      rows.map((r) => r.pseudonym),
      piiKeys,
      rows[0]?.ts,
      rows[rows.length - 1]?.ts,
      rows.map((r) => r.service),
      rows.map((r) => r.anonymousPseudonym),
    ],
  );
  return res.rowCount ?? 0;
}

/**
 * Deletes archived rows by primary key (occurred_at in epoch microseconds, exact), and only
 * those of the archive's service and range: a key that names another row deletes nothing.
 * unnest of the keys, which drizzle cannot express.
 * @returns the rows deleted.
 */
export async function deleteArchivedEvents(
  pool: pg.Pool,
  keys: readonly { occurredAtUs: string; id: string }[],
  scope: { service: string; from: Date; to: Date },
): Promise<number> {
  const res = await pool.query(
    `DELETE FROM events e
       USING unnest($1::bigint[], $2::uuid[]) AS k(us, id)
      WHERE e.occurred_at = 'epoch'::timestamptz + k.us * interval '1 microsecond'
        AND e.id = k.id AND e.service = $3 AND e.occurred_at >= $4 AND e.occurred_at < $5`,
    [keys.map((k) => k.occurredAtUs), keys.map((k) => k.id), scope.service, scope.from, scope.to],
  );
  return res.rowCount ?? 0;
}

/**
 * Rows after the cursor, written so the planner estimates it as the range it is and walks
 * the index in order (a row comparison is estimated at a handful of rows, which made it
 * fetch and sort everything after the cursor for every page).
 */
const AFTER_CURSOR = `AND occurred_at >= $3::timestamptz
  AND (occurred_at > $3::timestamptz OR id > $4::uuid OR (id = $4::uuid AND service > $5))`;

/** One exported event: its NDJSON line and its key, for the next page's cursor. */
export interface ExportLine {
  line: string;
  /** occurred_at as PostgreSQL text (exact). */
  ts: string;
  id: string;
  /** Ids are unique per service only: the cursor needs it to tell two rows apart. */
  service: string;
}

/**
 * Which rows of a subject id a page reads: those with it as `user_id`, or those with it as
 * `anonymous_id` whose user_id is not one of `exceptUserIds` (rows the subject's user_id
 * pages list already), so an event carrying two of a subject's ids is exported once.
 */
export type SubjectColumn =
  | { column: 'user_id' }
  | { column: 'anonymous_id'; exceptUserIds: readonly string[] };

/**
 * A page of one subject id's events, oldest first, after the cursor (occurred_at, id,
 * service): a range of the (user_id | anonymous_id, occurred_at, id) index, one short query. Each line is built by PostgreSQL
 * (`json_build_object`), so stored metadata is passed on without being parsed here.
 */
export async function subjectEventsPage(
  pool: pg.Pool,
  subjectId: string,
  limit: number,
  after?: { ts: string; id: string; service: string },
  services?: readonly string[],
  by: SubjectColumn = { column: 'user_id' },
): Promise<ExportLine[]> {
  const params: unknown[] = after
    ? [subjectId, limit, after.ts, after.id, after.service]
    : [subjectId, limit];
  let inServices = '';
  if (services) {
    params.push(services);
    inServices = `AND service = ANY($${params.length}::text[])`;
  }
  let match = 'user_id = $1';
  if (by.column === 'anonymous_id') {
    params.push(by.exceptUserIds);
    match = `anonymous_id = $1 AND (user_id IS NULL OR user_id <> ALL($${params.length}::text[]))`;
  }
  const { rows } = await pool.query<ExportLine>(
    `SELECT json_build_object('id', id, 'service', service, 'type', type,
              'timestamp', to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
              'receivedAt', to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
              'userId', user_id, 'anonymousId', anonymous_id, 'message', message, 'metadata', metadata,
              'violations', violations, 'source', 'database')::text AS line,
            occurred_at::text AS ts, id, service
       FROM events
      WHERE ${match} ${after ? AFTER_CURSOR : ''} ${inServices}
      ORDER BY occurred_at, id, service LIMIT $2`,
    params,
  );
  return rows;
}
