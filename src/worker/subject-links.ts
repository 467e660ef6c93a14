import { EVENT_LIMITS } from '../events/limits.ts';
import type { SubjectLink } from '../store/subject-links.repo.ts';

/** Only events whose text holds one of these can carry a link; the rest are never parsed. */
const MAY_LINK = ['"anonymousId":"', '"type":"alias"'];

/**
 * What ingest accepts as a subject id (1–256 characters, no NUL): `previousId` comes from
 * metadata, where a longer value is allowed but could not be an index entry.
 */
const isId = (v: unknown): v is string =>
  typeof v === 'string' && v.length > 0 && v.length <= EVENT_LIMITS.maxUserIdLength && !v.includes('\u0000');

/**
 * The subject links a batch's events (their JSON as buffered) make (ARCHITECTURE §12),
 * each distinct pair once:
 *  - an `alias` event (a `userId` and a string `metadata.previousId`, the shape a Segment
 *    alias call becomes) links the previous id to the user id, and its `anonymousId` too;
 *  - any event carrying both a `userId` and an `anonymousId` (Segment's identify after
 *    anonymous browsing, and every call after it) links the two.
 * A text screen first: most events carry neither and are not parsed.
 */
export function linksOf(events: readonly string[]): SubjectLink[] {
  const links = new Map<string, SubjectLink>();
  const add = (from: string, to: string, via: SubjectLink['via'], keyId: unknown) => {
    if (from === to) return;
    const key = JSON.stringify([from, to]);
    if (!links.has(key)) links.set(key, { from, to, via, keyId: typeof keyId === 'string' ? keyId : null });
  };
  for (const json of events) {
    if (!MAY_LINK.some((s) => json.includes(s))) continue;
    let e: { type?: unknown; userId?: unknown; anonymousId?: unknown; keyId?: unknown; metadata?: unknown };
    try {
      e = JSON.parse(json) as typeof e;
    } catch {
      continue;
    }
    if (!isId(e?.userId)) continue;
    const meta = e.metadata as { previousId?: unknown; segmentType?: unknown } | null | undefined;
    const previousId = meta?.previousId;
    // A Segment call keeps its call type in segmentType: a track call named "alias" is no alias.
    const alias = e.type === 'alias' && (meta?.segmentType === undefined || meta.segmentType === 'alias');
    // A previousId sealed by METADATA_ENCRYPTION_KEYS cannot be read here: no link.
    if (alias && isId(previousId) && !previousId.startsWith('enc:v1:'))
      add(previousId, e.userId, 'alias', e.keyId);
    if (isId(e.anonymousId)) add(e.anonymousId, e.userId, alias ? 'alias' : 'anonymous_id', e.keyId);
  }
  return [...links.values()];
}
