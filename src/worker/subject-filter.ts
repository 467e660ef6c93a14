import type { DropReason, SubjectRegistry } from '../compliance/subjects.ts';
import type { Metrics } from '../telemetry/metrics.ts';

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
