import type pg from 'pg';
import type { Logger } from 'pino';
import { pseudonymize } from './policy.ts';
import type { RunLease } from './runs.ts';

export interface AnonymizeOptions {
  secret: string;
  piiKeys: readonly string[];
  cutoff: Date;
  batchRows: number;
  logger: Logger;
}

/**
 * Pseudonymises rows that occurred before `cutoff`: `user_id` becomes
 * HMAC-SHA256(secret, user_id) and the PII keys leave `metadata`, batch by batch, oldest
 * first. The HMAC is computed here, so the secret never reaches the database or its logs.
 * Idempotent: a row is marked `anonymized` in the same statement and never touched again.
 */
export async function anonymizeRows(pool: pg.Pool, lease: RunLease, o: AnonymizeOptions): Promise<number> {
  let total = 0;
  for (;;) {
    lease.check();
    // occurred_at as text keeps its microseconds (a JS Date would round them away).
    const { rows } = await pool.query<{ ts: string; id: string; user_id: string | null }>(
      `SELECT occurred_at::text AS ts, id, user_id FROM events
        WHERE NOT anonymized AND occurred_at < $1 ORDER BY occurred_at LIMIT $2`,
      [o.cutoff, o.batchRows],
    );
    if (rows.length === 0) break;
    const res = await pool.query(
      `UPDATE events e SET user_id = u.pseudonym, metadata = e.metadata - $4::text[], anonymized = true
         FROM unnest($1::timestamptz[], $2::uuid[], $3::text[]) AS u(ts, id, pseudonym)
        WHERE e.occurred_at = u.ts AND e.id = u.id AND NOT e.anonymized
          AND e.occurred_at BETWEEN $5::timestamptz AND $6::timestamptz`,
      [
        rows.map((r) => r.ts),
        rows.map((r) => r.id),
        rows.map((r) => (r.user_id === null ? null : pseudonymize(o.secret, r.user_id))),
        o.piiKeys,
        // Bounds of the batch, so only the partitions it touches are searched.
        rows[0]?.ts,
        rows[rows.length - 1]?.ts,
      ],
    );
    const n = res.rowCount ?? 0;
    total += n;
    await lease.add('rows_anonymized', n);
    o.logger.info({ runId: lease.id, step: 'rows.anonymized', rows: n }, 'retention step');
    await lease.step({ step: 'rows.anonymized', rows: n });
  }
  return total;
}
