import type { DropReason, SubjectRegistry } from '../compliance/subjects.ts';
import type { SubjectLink } from '../store/subject-links.repo.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { linksOf } from './subject-links.ts';

/**
 * Splits off the events of opted-out subjects and of subjects being erased (counted for
 * their erasure requests); they are acknowledged without being stored.
 */
export async function dropUnwanted<T>(
  subjects: SubjectRegistry | undefined,
  metrics: Metrics,
  items: T[],
  where: 'buffer' | 'checkpoint',
  json: (item: T) => string,
): Promise<{ store: T[]; dropped: T[] }> {
  if (!subjects || subjects.empty) return { store: items, dropped: [] };
  const store: T[] = [];
  const dropped: T[] = [];
  const drops: { reason: DropReason; userId: string }[] = [];
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
  return { store, dropped };
}

/**
 * The subject links a batch makes (see {@link linksOf}), to be recorded before it is
 * acknowledged: the erasure of a subject looks for them once the buffer is past its
 * request. Dropped events link too (an alias call of a subject being erased names an id
 * that must be erased with it), except a link between two ids both already erased, which
 * would only bring an erased id back into the table. `linking`: the dropped items that
 * make a link, kept with the batch if it goes to the disk checkpoint.
 */
export function linksToRecord<T>(
  subjects: SubjectRegistry | undefined,
  store: T[],
  dropped: T[],
  json: (item: T) => string,
): { links: SubjectLink[]; linking: T[] } {
  const links = linksOf(store.map(json));
  const linking: T[] = [];
  for (const item of dropped) {
    const made = linksOf([json(item)]).filter(
      (l) => !(subjects?.isErased(l.from) && subjects.isErased(l.to)),
    );
    if (made.length === 0) continue;
    links.push(...made);
    linking.push(item);
  }
  return { links, linking };
}
