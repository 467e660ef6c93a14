import type pg from 'pg';

/*
 * The `subject_links` table (ARCHITECTURE §12): which subject ids name one person. Hand-written
 * SQL: an unnest insert (one statement per batch, whatever its number of links) and a
 * recursive CTE, neither of which drizzle can express.
 */

/** Why two ids are linked: an `alias` call, or one event carrying a `userId` and an `anonymousId`. */
export type LinkVia = 'alias' | 'anonymous_id';

export interface SubjectLink {
  from: string;
  to: string;
  via: LinkVia;
  keyId: string | null;
}

/** At most this many ids are gathered for one subject (a guard against a runaway chain). */
export const MAX_LINKED_SUBJECTS = 1_000;

/** Records links, once each (a link already stored is left as it is). */
export async function recordLinks(pool: pg.Pool, links: readonly SubjectLink[]): Promise<void> {
  if (links.length === 0) return;
  await pool.query(
    `INSERT INTO subject_links (from_id, to_id, via, key_id)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
     ON CONFLICT DO NOTHING`,
    [links.map((l) => l.from), links.map((l) => l.to), links.map((l) => l.via), links.map((l) => l.keyId)],
  );
}

/**
 * Every id linked to `ids`, transitively, `ids` included (first, in their order), up to
 * `limit` ids. Each step follows a link from either end (both indexed); UNION keeps a cycle
 * from being walked twice.
 */
export async function linkedSubjects(
  pool: pg.Pool,
  ids: readonly string[],
  limit = MAX_LINKED_SUBJECTS,
): Promise<string[]> {
  const { rows } = await pool.query<{ id: string }>(
    `WITH RECURSIVE linked(id) AS (
       SELECT unnest($1::text[])
       UNION
       SELECT CASE WHEN l.from_id = linked.id THEN l.to_id ELSE l.from_id END
         FROM linked JOIN subject_links l ON l.from_id = linked.id OR l.to_id = linked.id
     )
     SELECT id FROM linked LIMIT $2`,
    [ids, limit],
  );
  const found = new Set(ids);
  for (const r of rows) found.add(r.id);
  return [...found].slice(0, Math.max(limit, ids.length));
}

/** Deletes every link that has one of `ids` at either end (the ids' subject was erased). */
export async function deleteLinks(pool: pg.Pool, ids: readonly string[]): Promise<number> {
  const res = await pool.query(
    'DELETE FROM subject_links WHERE from_id = ANY($1::text[]) OR to_id = ANY($1::text[])',
    [ids],
  );
  return res.rowCount ?? 0;
}
