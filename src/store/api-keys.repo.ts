import { createHash, randomBytes } from 'node:crypto';
import { and, desc, eq, gt, isNull, or, sql } from 'drizzle-orm';
import type { Db } from './db.ts';
import { apiKeys } from './schema.ts';

export const SCOPES = ['ingest', 'read', 'dsar', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface ApiKeyInfo {
  id: string;
  name: string;
  scopes: Scope[];
  /** Services the key may write and read; empty: every service. */
  services: string[];
  rateLimitPerMinute: number | null;
  keyPrefix: string;
  createdAt: string;
  revokedAt: string | null;
  /** Set on a rotated key: it works until then, then stops. */
  expiresAt: string | null;
}

/** SHA-256 hex of a key: keys are 192-bit random, so a fast hash is enough. */
export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** A new random key, shown to its owner once. */
export function generateKey(): string {
  return `trb_${randomBytes(24).toString('base64url')}`;
}

/** What {@link generateKey} makes: `trb_` and 32 base64url characters (24 random bytes). */
const STORED_KEY_SHAPE = /^trb_[A-Za-z0-9_-]{32}$/;

/** Whether `key` can be a stored key at all; one that cannot needs no lookup. */
export function isStoredKeyShape(key: string): boolean {
  return STORED_KEY_SHAPE.test(key);
}

function toInfo(row: typeof apiKeys.$inferSelect): ApiKeyInfo {
  return {
    id: row.id,
    name: row.name,
    scopes: row.scopes.filter((s): s is Scope => (SCOPES as readonly string[]).includes(s)),
    services: row.services,
    rateLimitPerMinute: row.rateLimitPerMinute,
    keyPrefix: row.keyPrefix,
    createdAt: row.createdAt.toISOString(),
    revokedAt: row.revokedAt ? row.revokedAt.toISOString() : null,
    expiresAt: row.expiresAt ? row.expiresAt.toISOString() : null,
  };
}

type NewKey = { name: string; scopes: Scope[]; services?: string[]; rateLimitPerMinute?: number | null };

export async function createApiKey(
  db: Pick<Db, 'insert'>,
  input: NewKey,
): Promise<{ key: string; info: ApiKeyInfo }> {
  const key = generateKey();
  const [row] = await db
    .insert(apiKeys)
    .values({
      name: input.name,
      keyHash: hashKey(key),
      keyPrefix: key.slice(0, 8),
      scopes: [...new Set(input.scopes)],
      services: [...new Set(input.services ?? [])].sort(),
      rateLimitPerMinute: input.rateLimitPerMinute ?? null,
    })
    .returning();
  if (!row) throw new Error('insert returned no row');
  return { key, info: toInfo(row) };
}

/** Not revoked, and not past the end of a rotation's overlap. */
const isActive = () =>
  and(isNull(apiKeys.revokedAt), or(isNull(apiKeys.expiresAt), gt(apiKeys.expiresAt, sql`now()`)));

/** The active key with this hash. */
export async function findActiveKeyByHash(db: Db, keyHash: string): Promise<ApiKeyInfo | undefined> {
  const [row] = await db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.keyHash, keyHash), isActive()))
    .limit(1);
  return row ? toInfo(row) : undefined;
}

export async function listApiKeys(db: Db): Promise<ApiKeyInfo[]> {
  const rows = await db.select().from(apiKeys).orderBy(desc(apiKeys.createdAt));
  return rows.map(toInfo);
}

/** Revokes a key; false when no active key has this id. */
export async function revokeApiKey(db: Db, id: string): Promise<boolean> {
  const rows = await db
    .update(apiKeys)
    .set({ revokedAt: new Date() })
    .where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
    .returning({ id: apiKeys.id });
  return rows.length > 0;
}

const ROTATED = ' (rotated)';

/**
 * Replaces an active key: a new key with the same scopes and limit, while the old one keeps
 * working for `overlapSeconds` (an earlier, shorter expiry is kept). One transaction with
 * the old row locked, so concurrent rotations or a revocation apply one after the other.
 * @returns the new key and the old key's expiry, or undefined when no active key has this id.
 */
export async function rotateApiKey(
  db: Db,
  id: string,
  overlapSeconds: number,
): Promise<{ key: string; info: ApiKeyInfo; previous: ApiKeyInfo } | undefined> {
  return db.transaction(async (tx) => {
    const [old] = await tx
      .select()
      .from(apiKeys)
      .where(and(eq(apiKeys.id, id), isActive()))
      .for('update');
    if (!old) return undefined;
    const expiresAt = sql`LEAST(${apiKeys.expiresAt}, now() + make_interval(secs => ${overlapSeconds}))`;
    const [previous] = await tx.update(apiKeys).set({ expiresAt }).where(eq(apiKeys.id, id)).returning();
    if (!previous) throw new Error('update returned no row');
    const name = old.name.endsWith(ROTATED)
      ? old.name
      : `${old.name.slice(0, 128 - ROTATED.length)}${ROTATED}`;
    const created = await createApiKey(tx, {
      name,
      scopes: toInfo(old).scopes,
      services: old.services,
      rateLimitPerMinute: old.rateLimitPerMinute,
    });
    return { ...created, previous: toInfo(previous) };
  });
}

/** What `PATCH /v1/admin/keys/:id` may change; absent fields are left as they are. */
export interface KeyChanges {
  name?: string;
  services?: string[];
  rateLimitPerMinute?: number | null;
}

/** Changes an active key in place (its secret stays); undefined when no active key has this id. */
export async function updateApiKey(db: Db, id: string, changes: KeyChanges): Promise<ApiKeyInfo | undefined> {
  const set: Partial<typeof apiKeys.$inferInsert> = {};
  if (changes.name !== undefined) set.name = changes.name;
  if (changes.services !== undefined) set.services = [...new Set(changes.services)].sort();
  if (changes.rateLimitPerMinute !== undefined) set.rateLimitPerMinute = changes.rateLimitPerMinute;
  const [row] = await db
    .update(apiKeys)
    .set(set)
    .where(and(eq(apiKeys.id, id), isActive()))
    .returning();
  return row ? toInfo(row) : undefined;
}
