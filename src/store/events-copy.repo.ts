import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { beginUntimed, connectForCopy } from './db.ts';

/*
 * Events in and out of PostgreSQL as CSV files with COPY, for the archive: drizzle has no
 * COPY. Each stream runs on a connection of its own with no timeouts (a month of a busy
 * service takes a while). The CSV is the one archive/parquet.ts reads and writes: the
 * columns of its ARCHIVE_COLUMNS in that order (the events table's own order), every
 * non-NULL text quoted so that an unquoted empty field means NULL, timestamps as UTC
 * RFC 3339 with microseconds, metadata and violations as their JSON text.
 */

const PG_UTC = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

/** The SELECT list written as CSV: timestamps as UTC RFC 3339 with microseconds, metadata as JSON text. */
const EXPORT_COLUMNS = `id, to_char(occurred_at AT TIME ZONE 'UTC', ${PG_UTC}), to_char(received_at AT TIME ZONE 'UTC', ${PG_UTC}), service, type, user_id, message, metadata::text, anonymized, key_id, anonymous_id, violations::text`;
/** Every non-NULL text quoted, so an unquoted empty field means NULL. */
const CSV_OPTIONS =
  'FORMAT csv, FORCE_QUOTE (service, type, user_id, message, metadata, key_id, anonymous_id, violations)';

/** The rows of one archive unit: a service's rows in [from, to) of `source`. */
export interface ExportScope {
  /** `events`, or a detached partition's table. */
  source: string;
  service: string;
  from: Date;
  to: Date;
}

/** Streams a unit's rows out of PostgreSQL into a CSV file, oldest first, in a read-only transaction. */
export async function copyEventsToCsv(
  databaseUrl: string,
  scope: ExportScope,
  csvPath: string,
): Promise<void> {
  const lit = pg.escapeLiteral;
  const where = `service = ${lit(scope.service)} AND occurred_at >= ${lit(scope.from.toISOString())}
      AND occurred_at < ${lit(scope.to.toISOString())}`;
  const source = pg.escapeIdentifier(scope.source);
  const client = await connectForCopy(databaseUrl, 'tributary-retention');
  try {
    await beginUntimed(client, { readOnly: true });
    // COPY cannot take parameters: the literals above are escaped, the table name quoted.
    const stream = client.query(
      copyTo(
        `COPY (SELECT ${EXPORT_COLUMNS} FROM ${source} WHERE ${where} ORDER BY occurred_at, id)
           TO STDOUT WITH (${CSV_OPTIONS})`,
      ),
    );
    await pipeline(stream, createWriteStream(csvPath));
    await client.query('COMMIT');
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Loads a CSV file of archived rows into `events` through a temporary table, leaving rows
 * already present alone (ON CONFLICT DO NOTHING), then runs `alsoInTransaction` on the same
 * connection before COMMIT, so what it records stands or falls with the rows.
 * @returns the rows inserted (those not in PostgreSQL already).
 */
export async function loadEventsFromCsv(
  databaseUrl: string,
  csvPath: string,
  alsoInTransaction: (client: pg.ClientBase) => Promise<void>,
): Promise<number> {
  const client = await connectForCopy(databaseUrl, 'tributary-restore');
  try {
    await beginUntimed(client);
    await client.query(
      `CREATE TEMP TABLE restore_rows (id uuid, occurred_at timestamptz, received_at timestamptz, service text,
         type text, user_id text, message text, metadata jsonb, anonymized boolean, key_id text,
         anonymous_id text, violations jsonb) ON COMMIT DROP`,
    );
    await pipeline(
      createReadStream(csvPath),
      client.query(copyFrom('COPY restore_rows FROM STDIN WITH (FORMAT csv)')),
    );
    const res = await client.query(
      `WITH inserted AS (
         INSERT INTO events (id, occurred_at, received_at, service, type, user_id, message, metadata, anonymized, key_id,
                             anonymous_id, violations)
         SELECT id, occurred_at, received_at, service, type, user_id, message, metadata, anonymized, key_id, anonymous_id,
                violations
           FROM restore_rows
         ON CONFLICT DO NOTHING
         RETURNING occurred_at, id, service)
       INSERT INTO event_feed (occurred_at, id, service) SELECT occurred_at, id, service FROM inserted`,
    );
    await alsoInTransaction(client);
    await client.query('COMMIT');
    return res.rowCount ?? 0;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    await client.end().catch(() => {});
  }
}
