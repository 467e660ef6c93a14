import type pg from 'pg';
import type { DropReason, SubjectRegistry } from '../compliance/subjects.ts';
import { classifyDbError } from '../store/errors.ts';
import { recordLinks, type SubjectLink } from '../store/subject-links.repo.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { linksOf } from './subject-links.ts';

/** Why an item was dropped, and the subject id that made it so. */
export type Drop = { reason: DropReason; userId: string };

/**
 * Splits off the events of opted-out subjects and of subjects being erased (counted for
 * their erasure requests); they are acknowledged without being stored. `drops[i]` says why
 * `dropped[i]` was.
 */
export async function dropUnwanted<T>(
  subjects: SubjectRegistry | undefined,
  metrics: Metrics,
  items: T[],
  where: 'buffer' | 'checkpoint',
  json: (item: T) => string,
): Promise<{ store: T[]; dropped: T[]; drops: Drop[] }> {
  if (!subjects || subjects.empty) return { store: items, dropped: [], drops: [] };
  const store: T[] = [];
  const dropped: T[] = [];
  const drops: Drop[] = [];
  for (const item of items) {
    const drop = subjects.dropReason(json(item));
    if (drop) {
      dropped.push(item);
      drops.push(drop);
    } else store.push(item);
  }
  if (drops.length > 0) {
    for (const d of drops) metrics.eventsSkipped.inc({ reason: d.reason });
    await subjects.recordDrops(drops, where);
  }
  return { store, dropped, drops };
}

/** The links a batch makes, and the erasures they extend (see {@link linksToRecord}). */
export interface BatchLinks {
  links: SubjectLink[];
  /** An erased id, and an id linked to it by an event that erasure covers. */
  extensions: { erased: string; linked: string }[];
}

/**
 * The subject links a batch makes (see {@link linksOf}), to be recorded before it is
 * acknowledged: the erasure of a subject looks for them once the buffer is past its
 * request. Dropped events link too (an alias call of a subject being erased names an id
 * that must be erased with it), except a link between two ids both already erased, which
 * would only bring an erased id back into the table. An event dropped as erased that links
 * its erased id to one not erased (an alias call in a checkpoint replayed after the erasure
 * finished) extends that erasure to the new id (`extensions`). `linking`: the dropped items
 * that make a link, kept with the batch if it goes to the disk checkpoint.
 */
export function linksToRecord<T>(
  subjects: SubjectRegistry | undefined,
  store: T[],
  dropped: T[],
  drops: Drop[],
  json: (item: T) => string,
): BatchLinks & { linking: T[] } {
  const links = linksOf(store.map(json));
  const linking: T[] = [];
  const extensions: BatchLinks['extensions'] = [];
  const erased = (id: string) => subjects?.isErased(id) ?? false;
  for (const [i, item] of dropped.entries()) {
    const made = linksOf([json(item)]).filter((l) => !(erased(l.from) && erased(l.to)));
    if (made.length === 0) continue;
    links.push(...made);
    linking.push(item);
    if (drops[i]?.reason !== 'erased') continue;
    for (const l of made) {
      if (erased(l.from)) extensions.push({ erased: l.from, linked: l.to });
      else if (erased(l.to)) extensions.push({ erased: l.to, linked: l.from });
    }
  }
  return { links, linking, extensions };
}

/**
 * Records a batch's links (one statement, none without links) and extends the erasures they
 * reach. Links PostgreSQL refuses as data are let go: they must not hold the batch back
 * forever (ids are checked as ingest checks them, so none is expected).
 */
export async function recordBatchLinks(
  pool: pg.Pool,
  subjects: SubjectRegistry | undefined,
  { links, extensions }: BatchLinks,
): Promise<void> {
  try {
    await recordLinks(pool, links);
  } catch (err) {
    if (classifyDbError(err) !== 'data') throw err;
    return;
  }
  if (extensions.length > 0) await subjects?.extendErasures(extensions);
}
