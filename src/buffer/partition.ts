/**
 * Stable partition of an event: FNV-1a (32-bit) of `userId`, else `anonymousId`, else
 * `service` ({@link routingKeyOf}), modulo the partition count, so one subject's events stay in
 * one stream and in order.
 */
export function partitionFor(routingKey: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < routingKey.length; i++) {
    hash ^= routingKey.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}

/** What an event is partitioned by: its subject when it names one, else its service. */
export function routingKeyOf(event: { userId?: string; anonymousId?: string; service?: string }): string {
  return event.userId ?? event.anonymousId ?? event.service ?? '';
}
