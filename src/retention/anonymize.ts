import type pg from 'pg';
import type { Logger } from 'pino';
import { pseudonymize } from '../events/pseudonym.ts';
import { anonymizeEvents, rowsToAnonymize } from '../store/events.repo.ts';
import type { RunLease } from '../store/run-leases.repo.ts';

export interface AnonymizeOptions {
  secret: string;
  piiKeys: readonly string[];
  cutoff: Date;
  batchRows: number;
  logger: Logger;
}

/**
 * Pseudonymises rows that occurred before `cutoff`: `user_id` becomes
 * HMAC-SHA256(secret, user_id) (`anonymous_id` likewise) and the PII keys leave `metadata`, batch by batch, oldest
 * first. The HMAC is computed here, so the secret never reaches the database or its logs.
 * `violations` stays: it holds a tracking plan's paths and messages, never the event's values.
 * Idempotent: a row is marked `anonymized` in the same statement and never touched again.
 */
export async function anonymizeRows(pool: pg.Pool, lease: RunLease, o: AnonymizeOptions): Promise<number> {
  let total = 0;
  for (;;) {
    lease.check();
    const rows = await rowsToAnonymize(pool, o.cutoff, o.batchRows);
    if (rows.length === 0) break;
    const n = await anonymizeEvents(
      pool,
      rows.map((r) => ({
        ts: r.ts,
        id: r.id,
        service: r.service,
        pseudonym: r.userId === null ? null : pseudonymize(o.secret, r.userId),
        anonymousPseudonym: r.anonymousId === null ? null : pseudonymize(o.secret, r.anonymousId),
      })),
      o.piiKeys,
    );
    total += n;
    await lease.add('rows_anonymized', n);
    o.logger.info({ runId: lease.id, step: 'rows.anonymized', rows: n }, 'retention step');
    await lease.step({ step: 'rows.anonymized', rows: n });
  }
  return total;
}
