import { createHash } from 'node:crypto';

/**
 * A source's record → an event input (ARCHITECTURE §15), pure. The event's id is derived
 * from (source, record id, cursor value): a record read twice gives the same id (a
 * duplicate, never a second row); a changed record (a new cursor value) gives a new one.
 * The input then goes through the same checks as an event sent over HTTP.
 */

/** Where an event's fields come from in a record: dotted paths (columns for a table). */
export interface RecordMapping {
  sourceId: string;
  service: string;
  id: string;
  type: { path: string } | { fixed: string };
  userId?: string | undefined;
  timestamp?: string | undefined;
}

/** A record that could not become an event input, and why (no values, only names). */
export interface MappingProblem {
  path: string;
  code: string;
  message: string;
}

export type Mapped =
  | { ok: true; input: Record<string, unknown>; recordId: string }
  | { ok: false; problem: MappingProblem };

/** The value at a dotted path (`a.b.0.c`), or undefined. A key containing dots is found whole first. */
export function valueAt(record: unknown, path: string): unknown {
  if (record === null || typeof record !== 'object') return undefined;
  const obj = record as Record<string, unknown>;
  if (Object.hasOwn(obj, path)) return obj[path];
  const dot = path.indexOf('.');
  if (dot < 0) return undefined;
  const head = path.slice(0, dot);
  return Object.hasOwn(obj, head) ? valueAt(obj[head], path.slice(dot + 1)) : undefined;
}

/** A record id or cursor value as text: strings as they are, numbers and booleans printed; anything else none. */
function scalarText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v instanceof Date && !Number.isNaN(v.getTime())) return v.toISOString();
  return undefined;
}

const DATE_TIME =
  /^(\d{4}-\d{2}-\d{2})(?:[Tt ](\d{2}:\d{2})(?::(\d{2})(?:\.(\d+))?)?)?\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?$/;

/**
 * A timestamp as RFC 3339 UTC with milliseconds: a date or date-time string (ISO 8601 or
 * PostgreSQL's text form, `2026-01-02 03:04:05.123456+00`; no offset is UTC), a `Date`, or
 * Unix time as a number or digits (seconds below 10^11, milliseconds above, as APIs send both).
 */
export function toTimestamp(v: unknown): string | undefined {
  let ms: number;
  if (v instanceof Date) ms = v.getTime();
  else if (typeof v === 'number') ms = Math.abs(v) < 1e11 ? v * 1000 : v;
  else if (typeof v === 'string' && /^\d{9,13}(\.\d+)?$/.test(v)) return toTimestamp(Number(v));
  else if (typeof v === 'string') {
    const m = DATE_TIME.exec(v.trim());
    if (!m) return undefined;
    const [, date, hm = '00:00', sec = '00', frac = '', tz] = m;
    let offset = tz === undefined || tz === 'z' || tz === 'Z' ? 'Z' : tz.replace(':', '');
    if (offset.length === 3) offset += '00';
    if (offset !== 'Z') offset = `${offset.slice(0, 3)}:${offset.slice(3)}`;
    ms = Date.parse(`${date}T${hm}:${sec}.${frac.padEnd(3, '0').slice(0, 3)}${offset}`);
  } else return undefined;
  if (!Number.isFinite(ms)) return undefined;
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/** A UUID (version 8, RFC 9562's custom kind) from SHA-256 of the parts, NUL-separated. */
export function derivedId(parts: readonly string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  const b = h.digest().subarray(0, 16);
  b[6] = ((b[6] as number) & 0x0f) | 0x80;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const problem = (path: string, code: string, message: string): Mapped => ({
  ok: false,
  problem: { path, code, message },
});

/**
 * The event input for `record`. `keys` are what the reader knows exactly (a table's cursor
 * and id columns as PostgreSQL prints them); otherwise the id is read at the mapping's id
 * path and the cursor value is the mapping's timestamp field as sent. `receivedAt` is the
 * timestamp only when the mapping names none (webhooks).
 */
export function mapRecord(
  record: unknown,
  mapping: RecordMapping,
  keys: { cursor?: string | undefined; recordId?: string | undefined } = {},
  receivedAt?: string,
): Mapped {
  if (record === null || typeof record !== 'object' || Array.isArray(record)) {
    return problem('', 'invalid_record', 'the record is not a JSON object');
  }
  const fields = record as Record<string, unknown>;
  const recordId = keys.recordId ?? scalarText(valueAt(fields, mapping.id));
  if (recordId === undefined || recordId === '') {
    return problem(mapping.id, 'missing_id', `the record has no id at "${mapping.id}"`);
  }
  let type: unknown;
  if ('fixed' in mapping.type) type = mapping.type.fixed;
  else {
    type = scalarText(valueAt(fields, mapping.type.path));
    if (type === undefined || type === '') {
      return problem(
        mapping.type.path,
        'missing_type',
        `the record has no event type at "${mapping.type.path}"`,
      );
    }
  }
  let timestamp = receivedAt;
  let cursor = keys.cursor;
  if (mapping.timestamp !== undefined) {
    const raw = valueAt(fields, mapping.timestamp);
    timestamp = toTimestamp(raw);
    if (timestamp === undefined) {
      return problem(
        mapping.timestamp,
        'invalid_timestamp',
        `the record's "${mapping.timestamp}" is not a date, date-time or Unix time`,
      );
    }
    cursor ??= scalarText(raw);
  }
  const input: Record<string, unknown> = {
    id: derivedId([mapping.sourceId, recordId, cursor ?? '']),
    service: mapping.service,
    type,
    metadata: fields,
  };
  if (timestamp !== undefined) input.timestamp = timestamp;
  if (mapping.userId !== undefined) {
    const userId = scalarText(valueAt(fields, mapping.userId));
    if (userId !== undefined && userId !== '') input.userId = userId;
  }
  return { ok: true, input, recordId };
}

/** Where a configured source's events take their fields from. */
export function mappingOf(
  sourceId: string,
  c:
    | {
        kind: 'postgres';
        service: string;
        idColumn: string;
        typeColumn?: string | undefined;
        type?: string | undefined;
        userIdColumn?: string | undefined;
        timestampColumn?: string | undefined;
        cursorColumn: string;
      }
    | {
        kind: 'http' | 'webhook';
        service: string;
        idField: string;
        typeField?: string | undefined;
        type?: string | undefined;
        userIdField?: string | undefined;
        timestampField?: string | undefined;
      },
): RecordMapping {
  if (c.kind === 'postgres') {
    return {
      sourceId,
      service: c.service,
      id: c.idColumn,
      type: c.typeColumn !== undefined ? { path: c.typeColumn } : { fixed: c.type ?? '' },
      userId: c.userIdColumn,
      timestamp: c.timestampColumn ?? c.cursorColumn,
    };
  }
  return {
    sourceId,
    service: c.service,
    id: c.idField,
    type: c.typeField !== undefined ? { path: c.typeField } : { fixed: c.type ?? '' },
    userId: c.userIdField,
    timestamp: c.timestampField,
  };
}
