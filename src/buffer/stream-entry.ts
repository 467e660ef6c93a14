/** One entry read from a partition stream. */
export interface StreamEntry {
  partition: number;
  /** Stream entry id, e.g. `1700000000000-0`. */
  id: string;
  /** Format version (`v`). */
  version: string | undefined;
  /** Event JSON (`e`). */
  event: string | undefined;
  /** Traceparent of the ingest span (`tp`). */
  traceparent: string | undefined;
  /** Times this entry has been delivered, this delivery included. */
  deliveries: number;
}

/** An entry as XREADGROUP and XAUTOCLAIM return it; fields null when it was deleted meanwhile. */
export type RawEntry = [id: string, fields: string[] | null];

/** A raw entry as a {@link StreamEntry}, or null for a deleted one. */
export function toEntry(partition: number, [id, fields]: RawEntry, deliveries: number): StreamEntry | null {
  if (!fields) return null;
  // Read the three known fields in place, on the worker's hot path: no intermediate object
  // per entry (redis-reply.ts's helpers build one).
  let version: string | undefined;
  let event: string | undefined;
  let traceparent: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i];
    if (name === 'e') event = fields[i + 1];
    else if (name === 'v') version = fields[i + 1];
    else if (name === 'tp') traceparent = fields[i + 1];
  }
  return { partition, id, version, event, traceparent, deliveries };
}

/** Entry ids by partition, in input order. */
export function groupByPartition(
  entries: readonly Pick<StreamEntry, 'partition' | 'id'>[],
): Map<number, string[]> {
  const byPartition = new Map<number, string[]>();
  for (const e of entries) {
    const ids = byPartition.get(e.partition);
    if (ids) ids.push(e.id);
    else byPartition.set(e.partition, [e.id]);
  }
  return byPartition;
}

/** The smallest stream id greater than `id`. */
export function nextId(id: string): string {
  const [ms, seq] = id.split('-');
  return `${ms}-${BigInt(seq ?? '0') + 1n}`;
}
