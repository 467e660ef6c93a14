// The compliance page's pure parts: subject ids in paths, the export's file name and line
// count, and the erasure requests the page keeps watching. No DOM, so the unit tests import it.

/** The API's limit on a subject id (`EVENT_LIMITS.maxUserIdLength`). */
export const MAX_SUBJECT_LENGTH = 256;

/** What is wrong with a subject id before it is sent; undefined when nothing is. */
export function subjectProblem(subject: string): string | undefined {
  if (subject.length === 0) return 'Enter a userId or anonymousId.';
  if (subject.length > MAX_SUBJECT_LENGTH)
    return `A subject id has at most ${MAX_SUBJECT_LENGTH} characters.`;
  if (subject.includes('\u0000')) return 'A subject id cannot hold a NUL character.';
  // URLs resolve `.` and `..` segments (encoded or not) before a request leaves the browser,
  // so these can never reach the subject routes; ingest refuses them for the same reason.
  if (subject === '.' || subject === '..') return `"${subject}" cannot be a subject id in a URL path.`;
  return undefined;
}

/** `/v1/users/<subject>/<tail>`, the subject percent-encoded as one path segment. */
export function subjectPath(subject: string, tail: 'opt-out' | 'events' | 'events/export'): string {
  const problem = subjectProblem(subject);
  if (problem) throw new Error(problem);
  return `/v1/users/${encodeURIComponent(subject)}/${tail}`;
}

/**
 * The export's file name: the subject's safe characters (an id can hold anything, a file
 * name cannot) and the time, so two exports never overwrite each other.
 */
export function exportFileName(subject: string, at: Date): string {
  const safe =
    subject
      .replace(/[^A-Za-z0-9._-]+/g, '_')
      .replace(/^[._]+/, '')
      .slice(0, 64) || 'subject';
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  return `tributary-export-${safe}-${stamp}.ndjson`;
}

/** Counts the lines of NDJSON as it streams in, chunk by chunk; a last line without `\n` counts. */
export class LineCounter {
  #newlines = 0;
  #bytes = 0;
  #endsOpen = false;

  add(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    for (const byte of chunk) if (byte === 0x0a) this.#newlines++;
    this.#bytes += chunk.length;
    this.#endsOpen = chunk[chunk.length - 1] !== 0x0a;
  }

  get lines(): number {
    return this.#newlines + (this.#endsOpen ? 1 : 0);
  }

  get bytes(): number {
    return this.#bytes;
  }
}

/** An erasure request the page follows: what it keeps (session storage) across a reload. */
export interface RememberedRequest {
  requestId: string;
  requestedAt: string;
}

/** How many requests the page remembers; older ones are forgotten. */
export const MAX_REMEMBERED = 20;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isRequestId = (id: string): boolean => UUID.test(id);

/** The list with `entry` first, without an earlier copy of it, at most {@link MAX_REMEMBERED} long. */
export function remember(list: readonly RememberedRequest[], entry: RememberedRequest): RememberedRequest[] {
  return [entry, ...list.filter((r) => r.requestId !== entry.requestId)].slice(0, MAX_REMEMBERED);
}

/** The list as stored; anything that is not one (edited by hand, an older format) is dropped. */
export function parseRemembered(stored: string | null): RememberedRequest[] {
  if (!stored) return [];
  let value: unknown;
  try {
    value = JSON.parse(stored);
  } catch {
    return [];
  }
  if (!Array.isArray(value)) return [];
  const list: RememberedRequest[] = [];
  for (const item of value as unknown[]) {
    const r = item as Partial<RememberedRequest> | null;
    if (typeof r?.requestId === 'string' && isRequestId(r.requestId) && typeof r.requestedAt === 'string') {
      list.push({ requestId: r.requestId, requestedAt: r.requestedAt });
    }
  }
  return list.slice(0, MAX_REMEMBERED);
}

export type ErasureState = 'pending' | 'running' | 'completed' | 'failed';
export const isFinished = (status: ErasureState): boolean => status === 'completed' || status === 'failed';
