import { and, desc, eq, gte, lt, lte, type SQL } from 'drizzle-orm';
import type { Db } from './db.ts';
import { auditLog } from './schema.ts';

/** `ok` for 2xx/3xx, `denied` for 401/403, `error` for anything else. */
export type AuditOutcome = 'ok' | 'denied' | 'error';

/** One admin or compliance call, as appended to `audit_log`. */
export interface AuditRecord {
  /** The caller's key id; null when authentication failed. */
  keyId: string | null;
  /** Stable name of the operation, e.g. `keys.create`. */
  action: string;
  method: string;
  path: string;
  /** The `:id`, `:userId`, `:runId`… of the route, if it has one. */
  target: string | null;
  ip: string | null;
  status: number;
  outcome: AuditOutcome;
  requestId: string | null;
  /** Small facts about the call; never a request body, never a key. */
  details: Record<string, unknown> | null;
}

export interface AuditEntry extends AuditRecord {
  id: number;
  /** When the row was written (RFC 3339). */
  at: string;
}

export interface AuditQuery {
  limit: number;
  /** Only entries older than this one (the id in a cursor). */
  beforeId?: number;
  keyId?: string;
  action?: string;
  /** Inclusive bounds on `at`. */
  from?: Date;
  to?: Date;
}

/** Appends one row. The table refuses UPDATE, DELETE and TRUNCATE (drizzle/0002). */
export async function appendAudit(db: Db, record: AuditRecord): Promise<void> {
  await db.insert(auditLog).values(record);
}

/**
 * A page of entries, newest first. Keyset pagination on the id (a bigserial, so the order
 * rows were written in): pages neither repeat nor skip rows while new ones arrive.
 */
export async function listAudit(
  db: Db,
  q: AuditQuery,
): Promise<{ entries: AuditEntry[]; nextCursor?: string }> {
  const where: SQL[] = [];
  if (q.beforeId !== undefined) where.push(lt(auditLog.id, q.beforeId));
  if (q.keyId !== undefined) where.push(eq(auditLog.keyId, q.keyId));
  if (q.action !== undefined) where.push(eq(auditLog.action, q.action));
  if (q.from !== undefined) where.push(gte(auditLog.at, q.from));
  if (q.to !== undefined) where.push(lte(auditLog.at, q.to));
  const rows = await db
    .select()
    .from(auditLog)
    .where(and(...where))
    .orderBy(desc(auditLog.id))
    .limit(q.limit + 1);
  const entries = rows.slice(0, q.limit).map(
    (r): AuditEntry => ({
      id: r.id,
      at: r.at.toISOString(),
      keyId: r.keyId,
      action: r.action,
      method: r.method,
      path: r.path,
      target: r.target,
      ip: r.ip,
      status: r.status,
      outcome: r.outcome as AuditOutcome,
      requestId: r.requestId,
      details: r.details ?? null,
    }),
  );
  const last = entries[entries.length - 1];
  return rows.length > q.limit && last ? { entries, nextCursor: encodeAuditCursor(last.id) } : { entries };
}

export function encodeAuditCursor(id: number): string {
  return Buffer.from(`audit|${id}`).toString('base64url');
}

/** The id in a cursor made by {@link encodeAuditCursor}; undefined when it is not one. */
export function decodeAuditCursor(cursor: string): number | undefined {
  const match = /^audit\|([1-9]\d{0,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  const id = Number(match?.[1]);
  return Number.isSafeInteger(id) && encodeAuditCursor(id) === cursor ? id : undefined;
}
