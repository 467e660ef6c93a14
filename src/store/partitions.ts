import pg from 'pg';
import { inTransaction } from './db.ts';

/*
 * The partitions of `events`: creating, listing, detaching and dropping them, and the
 * per-partition reads a retention pass plans with. Hand-written SQL: drizzle has no
 * partition DDL or catalog queries, and table names vary per call (quoted with
 * pg.escapeIdentifier or built by monthsBetween()).
 */

/** Serialises partition maintenance across processes (pg_advisory_xact_lock key). */
const MAINTENANCE_LOCK = 0x7472_6962; // "trib"

export interface MonthPartition {
  name: string;
  /** Inclusive lower bound, `YYYY-MM-01`. */
  from: string;
  /** Exclusive upper bound, first day of the next month. */
  to: string;
}

/** Monthly partitions (UTC) covering [from, to], both inclusive by month. */
export function monthsBetween(from: Date, to: Date): MonthPartition[] {
  const out: MonthPartition[] = [];
  let y = from.getUTCFullYear();
  let m = from.getUTCMonth();
  const endKey = to.getUTCFullYear() * 12 + to.getUTCMonth();
  while (y * 12 + m <= endKey) {
    const next = m === 11 ? [y + 1, 0] : [y, m + 1];
    out.push({
      name: `events_${y}_${String(m + 1).padStart(2, '0')}`,
      from: `${y}-${String(m + 1).padStart(2, '0')}-01`,
      to: `${next[0]}-${String((next[1] as number) + 1).padStart(2, '0')}-01`,
    });
    [y, m] = next as [number, number];
  }
  return out;
}

/** The months that must have a partition: now − retention … now + 2 months. */
export function requiredPartitions(now: Date, maxRetentionDays: number): MonthPartition[] {
  const from = new Date(now.getTime() - maxRetentionDays * 86_400_000);
  const to = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 2, 1));
  return monthsBetween(from, to);
}

/** Names of the tables attached to `events` as partitions (events_default among them). */
export async function attachedPartitionNames(pool: pg.Pool): Promise<string[]> {
  const { rows } = await pool.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_inherits i
       JOIN pg_class c ON c.oid = i.inhrelid
       JOIN pg_class p ON p.oid = i.inhparent
      WHERE p.relname = 'events'`,
  );
  return rows.map((r) => r.name);
}

/**
 * Creates the missing monthly partitions. A month whose rows already sit in
 * `events_default` (it should stay empty; an alert fires when it is not) has them moved
 * into the new partition in the same transaction. Returns the partitions created.
 */
export async function ensurePartitions(pool: pg.Pool, wanted: readonly MonthPartition[]): Promise<string[]> {
  const have = new Set(await attachedPartitionNames(pool));
  const missing = wanted.filter((p) => !have.has(p.name));
  const created: string[] = [];
  for (const part of missing) {
    await inTransaction(pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MAINTENANCE_LOCK]);
      const exists = await client.query('SELECT 1 FROM pg_class WHERE relname = $1', [part.name]);
      if (exists.rowCount === 0) {
        await createPartition(client, part);
        created.push(part.name);
      }
    });
  }
  return created;
}

// Partition DDL cannot be expressed with drizzle; names and bounds come from monthsBetween().
async function createPartition(client: pg.PoolClient, part: MonthPartition): Promise<void> {
  const range = `FOR VALUES FROM ('${part.from} 00:00:00+00') TO ('${part.to} 00:00:00+00')`;
  const stray = await client.query(
    `SELECT 1 FROM events_default WHERE occurred_at >= $1 AND occurred_at < $2 LIMIT 1`,
    [`${part.from}T00:00:00Z`, `${part.to}T00:00:00Z`],
  );
  if (stray.rowCount === 0) {
    await client.query(`CREATE TABLE "${part.name}" PARTITION OF events ${range}`);
    return;
  }
  await client.query(`CREATE TABLE "${part.name}" (LIKE events INCLUDING DEFAULTS INCLUDING COMPRESSION)`);
  await client.query(
    `WITH moved AS (DELETE FROM events_default WHERE occurred_at >= $1 AND occurred_at < $2 RETURNING *)
     INSERT INTO "${part.name}" SELECT * FROM moved`,
    [`${part.from}T00:00:00Z`, `${part.to}T00:00:00Z`],
  );
  await client.query(`ALTER TABLE events ATTACH PARTITION "${part.name}" ${range}`);
}

/** Tables named like a monthly partition that are not attached: detached by a pass, not yet dropped. */
export async function detachedPartitionNames(pool: pg.Pool): Promise<string[]> {
  const { rows } = await pool.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
      WHERE c.relkind = 'r' AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$' AND NOT c.relispartition
      ORDER BY c.relname`,
  );
  return rows.map((r) => r.name);
}

/** Whether an ordinary table of this name exists. */
export async function tableExists(pool: pg.Pool, name: string): Promise<boolean> {
  const { rowCount } = await pool.query(`SELECT 1 FROM pg_class WHERE relname = $1 AND relkind = 'r'`, [
    name,
  ]);
  return (rowCount ?? 0) > 0;
}

/** Detaches a partition from `events`: no row can enter it afterwards. */
export async function detachPartition(pool: pg.Pool, table: string): Promise<void> {
  await inTransaction(pool, async (client) => {
    // DETACH briefly locks `events` against inserts; never queue behind a long query for it.
    await client.query(`SET LOCAL lock_timeout = '10s'`);
    await client.query(`ALTER TABLE events DETACH PARTITION ${pg.escapeIdentifier(table)}`);
  });
}

/** Drops a detached partition, inside the caller's transaction (which records what it held). */
export async function dropDetachedPartition(client: pg.ClientBase, table: string): Promise<void> {
  await client.query(`DROP TABLE ${pg.escapeIdentifier(table)}`);
}

/** Distinct services in a (detached) partition, sorted. */
export async function servicesInTable(pool: pg.Pool, table: string): Promise<string[]> {
  const { rows } = await pool.query<{ service: string }>(
    `SELECT DISTINCT service FROM ${pg.escapeIdentifier(table)} ORDER BY service`,
  );
  return rows.map((r) => r.service);
}

/**
 * Distinct services in an attached partition, by walking its (service, occurred_at) index
 * with a recursive query: one probe per service instead of a scan of the month.
 */
export async function servicesInPartition(pool: pg.Pool, table: string): Promise<string[]> {
  const ident = pg.escapeIdentifier(table);
  const { rows } = await pool.query<{ service: string }>(
    `WITH RECURSIVE s AS (
       (SELECT service FROM ${ident} ORDER BY service LIMIT 1)
       UNION ALL
       SELECT (SELECT service FROM ${ident} WHERE service > s.service ORDER BY service LIMIT 1)
         FROM s WHERE s.service IS NOT NULL)
     SELECT service FROM s WHERE service IS NOT NULL`,
  );
  return rows.map((r) => r.service);
}

/** Whether a partition holds any row of `service` that occurred before `cutoff`. */
export async function hasRowsBefore(
  pool: pg.Pool,
  table: string,
  service: string,
  cutoff: Date,
): Promise<boolean> {
  const any = await pool.query(
    `SELECT 1 FROM ${pg.escapeIdentifier(table)} WHERE service = $1 AND occurred_at < $2 LIMIT 1`,
    [service, cutoff],
  );
  return Boolean(any.rowCount);
}

/** Rows in events_default older than `before`: each service's first row of each UTC month. */
export async function defaultPartitionMonths(
  pool: pg.Pool,
  before: Date,
): Promise<{ service: string; first: Date }[]> {
  const { rows } = await pool.query<{ service: string; first: Date }>(
    `SELECT service, min(occurred_at) AS first FROM events_default WHERE occurred_at < $1
      GROUP BY service, date_trunc('month', occurred_at AT TIME ZONE 'UTC')`,
    [before],
  );
  return rows;
}

/** Rows in events_default, counted up to `cap` so the count stays cheap however many there are. */
export async function countDefaultPartitionRows(pool: pg.Pool, cap: number): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT 1 FROM events_default LIMIT $1) AS s`,
    [cap],
  );
  return rows[0]?.n ?? 0;
}
