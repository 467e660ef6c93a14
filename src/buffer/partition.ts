/**
 * Stable partition of an event: FNV-1a (32-bit) of `userId`, else `service`, modulo the
 * partition count, so one subject's events stay in one stream and in order.
 */
export function partitionFor(routingKey: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < routingKey.length; i++) {
    hash ^= routingKey.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}
