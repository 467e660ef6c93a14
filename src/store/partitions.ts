import type pg from 'pg';
import { inTransaction } from './db.ts';

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

/**
 * Creates the missing monthly partitions. A month whose rows already sit in
 * `events_default` (it should stay empty; an alert fires when it is not) has them moved
 * into the new partition in the same transaction. Returns the partitions created.
 */
export async function ensurePartitions(pool: pg.Pool, wanted: readonly MonthPartition[]): Promise<string[]> {
  const existing = await pool.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_inherits i
       JOIN pg_class c ON c.oid = i.inhrelid
       JOIN pg_class p ON p.oid = i.inhparent
      WHERE p.relname = 'events'`,
  );
  const have = new Set(existing.rows.map((r) => r.name));
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
  await client.query(`CREATE TABLE "${part.name}" (LIKE events INCLUDING DEFAULTS)`);
  await client.query(
    `WITH moved AS (DELETE FROM events_default WHERE occurred_at >= $1 AND occurred_at < $2 RETURNING *)
     INSERT INTO "${part.name}" SELECT * FROM moved`,
    [`${part.from}T00:00:00Z`, `${part.to}T00:00:00Z`],
  );
  await client.query(`ALTER TABLE events ATTACH PARTITION "${part.name}" ${range}`);
}
