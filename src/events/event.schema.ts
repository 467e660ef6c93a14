import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { LossyNumber } from './json-numbers.ts';
import { EVENT_LIMITS, FORBIDDEN_KEYS } from './limits.ts';

/** One reason an event was refused; `path` is dotted (`metadata.a.b`). */
export interface ValidationIssue {
  path: string;
  code: string;
  message: string;
}

/** The event as it travels through the buffer and lands in the store (the entry's `e` field). */
export interface NormalisedEvent {
  id: string;
  service: string;
  type: string;
  /** RFC 3339 UTC, millisecond precision: becomes `occurred_at`. */
  timestamp: string;
  receivedAt: string;
  /** The API key that sent it (ARCHITECTURE §11): becomes `key_id`. */
  keyId?: string;
  userId?: string;
  /** A device or browser's id before the subject is known (Segment's `anonymousId`, §12). */
  anonymousId?: string;
  message?: string;
  metadata?: Record<string, unknown>;
  /** Its tracking-plan violations, when stored under `warn` (§14): becomes `violations`. */
  violations?: ValidationIssue[];
}

export interface ValidationContext {
  /** Receive time, epoch ms. */
  now: number;
  /** Oldest accepted timestamp is `now - maxAgeMs`. */
  maxAgeMs: number;
  /** The sending key's id, recorded with the event. */
  keyId?: string;
}

export type ParseResult =
  | { ok: true; event: NormalisedEvent; json: string }
  | { ok: false; issues: ValidationIssue[] };

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

const text = (min: number, max: number) =>
  z
    .string()
    .min(min)
    .max(max)
    .refine((s) => s.isWellFormed() && !s.includes('\u0000'), {
      params: { code: 'invalid_string' },
      message: 'must be valid Unicode with no NUL characters',
    });

const optional = <T extends z.ZodType>(schema: T) => schema.nullish();

/**
 * A subject id that names a path segment: `.` and `..` are taken out of any URL, so
 * `/v1/users/../events` could never erase, export or opt out the subject.
 */
const routable = (userId: string) => userId !== '.' && userId !== '..';
const UNROUTABLE_MESSAGE = 'cannot be "." or ".." (it could not be named in /v1/users/{userId})';

/** `userId` and `anonymousId`: both name a data subject in /v1/users/{userId}. */
const subjectId = () =>
  text(1, EVENT_LIMITS.maxUserIdLength).refine(routable, {
    params: { code: 'invalid_value' },
    message: UNROUTABLE_MESSAGE,
  });

export const eventShape = z.strictObject({
  id: optional(z.guid({ message: 'must be a UUID' })),
  service: text(1, EVENT_LIMITS.maxServiceLength).regex(/^[A-Za-z0-9._-]+$/, {
    message: 'must be 1–64 of A-Z a-z 0-9 . _ -',
  }),
  type: text(1, EVENT_LIMITS.maxTypeLength),
  timestamp: optional(z.string().regex(RFC3339, { message: 'must be an RFC 3339 date-time' })),
  userId: optional(subjectId()),
  anonymousId: optional(subjectId()),
  message: optional(text(0, EVENT_LIMITS.maxMessageLength)),
  metadata: optional(z.unknown()),
});

function issueCode(issue: z.core.$ZodIssue, input: Record<string, unknown>): string {
  switch (issue.code) {
    case 'invalid_type':
      return input[String(issue.path[0])] == null ? 'required' : 'invalid_type';
    case 'too_small':
      return 'too_short';
    case 'too_big':
      return 'too_long';
    case 'invalid_format':
      return 'invalid_format';
    case 'custom':
      return typeof issue.params?.code === 'string' ? issue.params.code : 'invalid_value';
    default:
      return 'invalid_value';
  }
}

function zodIssues(error: z.ZodError, input: Record<string, unknown>): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  for (const issue of error.issues) {
    if (out.length >= EVENT_LIMITS.maxIssues) break;
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys.slice(0, EVENT_LIMITS.maxIssues - out.length)) {
        out.push({ path: key, code: 'unknown_field', message: 'unknown field' });
      }
      continue;
    }
    const code = issueCode(issue, input);
    out.push({
      path: issue.path.join('.'),
      code,
      message: code === 'required' ? 'is required' : issue.message,
    });
  }
  return out;
}

/**
 * Walks `metadata` once: plain object at the top, bounded depth, no prototype keys,
 * well-formed strings (keys too), numbers that survive a JSON round trip unchanged (a
 * `LossyNumber` from `parseJsonExact`, a non-finite number, an integer beyond 2^53).
 */
export function checkMetadata(value: unknown): ValidationIssue[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof LossyNumber) {
    return [{ path: 'metadata', code: 'invalid_type', message: 'must be a JSON object' }];
  }
  const issues: ValidationIssue[] = [];
  // The path of the node being walked, as segments: joined only when an issue names it.
  const at: (string | number)[] = ['metadata'];
  const path = () => at.join('.');
  const walk = (node: unknown, depth: number): void => {
    if (issues.length >= EVENT_LIMITS.maxIssues) return;
    if (typeof node === 'string') {
      if (!node.isWellFormed() || node.includes('\u0000')) {
        issues.push({
          path: path(),
          code: 'invalid_string',
          message: 'must be valid Unicode with no NUL characters',
        });
      }
    } else if (typeof node === 'number') {
      if (!Number.isFinite(node)) {
        issues.push({ path: path(), code: 'invalid_number', message: 'number out of range' });
      } else if (Number.isInteger(node) && !Number.isSafeInteger(node)) {
        issues.push({
          path: path(),
          code: 'invalid_number',
          message: 'integer beyond 2^53; send it as a string',
        });
      }
    } else if (node instanceof LossyNumber) {
      issues.push({
        path: path(),
        code: 'invalid_number',
        message: Number.isFinite(node.value)
          ? `number would be stored as ${node.value}; send it as a string, or with fewer digits`
          : 'number out of range',
      });
    } else if (typeof node === 'object' && node !== null) {
      if (depth > EVENT_LIMITS.maxMetadataDepth) {
        issues.push({
          path: path(),
          code: 'too_deep',
          message: `nesting deeper than ${EVENT_LIMITS.maxMetadataDepth}`,
        });
        return;
      }
      if (Array.isArray(node)) {
        for (let i = 0; i < node.length; i++) {
          at.push(i);
          walk(node[i], depth + 1);
          at.pop();
        }
        return;
      }
      for (const key of Object.keys(node)) {
        // Bad keys are reported here, not by a nested walk: the cap is checked for each.
        if (issues.length >= EVENT_LIMITS.maxIssues) return;
        if (FORBIDDEN_KEYS.has(key)) {
          issues.push({
            path: `${path()}.${key}`,
            code: 'forbidden_key',
            message: `key "${key}" is not allowed`,
          });
        } else if (!key.isWellFormed() || key.includes('\u0000')) {
          issues.push({
            path: path(),
            code: 'invalid_string',
            message: 'keys must be valid Unicode with no NUL',
          });
        } else {
          at.push(key);
          walk((node as Record<string, unknown>)[key], depth + 1);
          at.pop();
        }
      }
    }
  };
  walk(value, 1);
  return issues;
}

function checkTimestamp(raw: string, ctx: ValidationContext): { ms: number } | ValidationIssue {
  const ms = Date.parse(raw.charCodeAt(10) === 32 ? `${raw.slice(0, 10)}T${raw.slice(11)}` : raw);
  if (Number.isNaN(ms) || !dayExists(raw)) {
    return { path: 'timestamp', code: 'invalid_format', message: 'must be an RFC 3339 date-time' };
  }
  if (ms > ctx.now + EVENT_LIMITS.maxFutureSkewMs) {
    return { path: 'timestamp', code: 'out_of_range', message: 'more than 5 minutes in the future' };
  }
  if (ms < ctx.now - ctx.maxAgeMs) {
    return { path: 'timestamp', code: 'out_of_range', message: 'older than the longest retention' };
  }
  return { ms };
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * Whether the day of the `YYYY-MM-DD` that starts `raw` exists in its month. Date.parse has
 * refused months outside 01–12 and days outside 01–31 (illegal values in its format) but takes
 * 2026-02-31, rolled over to March.
 */
function dayExists(raw: string): boolean {
  const year = Number(raw.slice(0, 4));
  const month = Number(raw.slice(5, 7));
  const day = Number(raw.slice(8, 10));
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return day <= (month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] as number));
}

const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const SERVICE = /^[A-Za-z0-9._-]+$/;
const FIELDS: ReadonlySet<string> = new Set([
  'id',
  'service',
  'type',
  'timestamp',
  'userId',
  'anonymousId',
  'message',
  'metadata',
]);

const isText = (v: unknown, min: number, max: number): v is string =>
  typeof v === 'string' && v.length >= min && v.length <= max && !v.includes('\u0000') && v.isWellFormed();

/**
 * The common case without the generic schema: true only when `eventShape` would accept
 * the object too. Anything else goes through `eventShape`, which words the refusal.
 */
export function fastShapeOk(o: Record<string, unknown>): boolean {
  for (const key in o) if (!FIELDS.has(key)) return false;
  const { id, service, type, timestamp, userId, anonymousId, message } = o;
  return (
    (id == null || (typeof id === 'string' && GUID.test(id))) &&
    isText(service, 1, EVENT_LIMITS.maxServiceLength) &&
    SERVICE.test(service) &&
    isText(type, 1, EVENT_LIMITS.maxTypeLength) &&
    (timestamp == null || (typeof timestamp === 'string' && RFC3339.test(timestamp))) &&
    (userId == null || (isText(userId, 1, EVENT_LIMITS.maxUserIdLength) && routable(userId))) &&
    (anonymousId == null ||
      (isText(anonymousId, 1, EVENT_LIMITS.maxUserIdLength) && routable(anonymousId))) &&
    (message == null || isText(message, 0, EVENT_LIMITS.maxMessageLength))
  );
}

type EventShape = z.infer<typeof eventShape>;

/**
 * Validates one decoded JSON value against the event contract and returns the
 * normalised event plus its serialised form (what goes into the buffer).
 */
export function parseEvent(input: unknown, ctx: ValidationContext): ParseResult {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return {
      ok: false,
      issues: [{ path: '', code: 'invalid_type', message: 'an event must be a JSON object' }],
    };
  }
  let raw: EventShape;
  if (fastShapeOk(input as Record<string, unknown>)) {
    raw = input as EventShape;
  } else {
    const shape = eventShape.safeParse(input);
    if (!shape.success)
      return { ok: false, issues: zodIssues(shape.error, input as Record<string, unknown>) };
    raw = shape.data;
  }

  const issues: ValidationIssue[] = [];
  let occurredMs = ctx.now;
  if (raw.timestamp != null) {
    const ts = checkTimestamp(raw.timestamp, ctx);
    if ('ms' in ts) occurredMs = ts.ms;
    else issues.push(ts);
  }
  if (raw.metadata != null) issues.push(...checkMetadata(raw.metadata));
  // A timestamp issue and a full list from the metadata would make one too many.
  if (issues.length > 0) return { ok: false, issues: issues.slice(0, EVENT_LIMITS.maxIssues) };

  const event: NormalisedEvent = {
    id: raw.id != null ? raw.id.toLowerCase() : randomUUID(),
    service: raw.service,
    type: raw.type,
    // Already canonical (what a JavaScript client's toISOString() sends): kept as it is.
    timestamp:
      raw.timestamp != null && isCanonicalTime(raw.timestamp)
        ? raw.timestamp
        : new Date(occurredMs).toISOString(),
    receivedAt: isoTime(ctx.now),
  };
  if (ctx.keyId !== undefined) event.keyId = ctx.keyId;
  if (raw.userId != null) event.userId = raw.userId;
  if (raw.anonymousId != null) event.anonymousId = raw.anonymousId;
  if (raw.message != null) event.message = raw.message;
  if (raw.metadata != null) event.metadata = raw.metadata as Record<string, unknown>;
  const json = JSON.stringify(event);
  // The metadata is part of the event, so only a large event needs it measured on its own.
  // (UTF-16 length ≥ bytes / 3, so a short string skips the byte count too.)
  const eventBytes = json.length * 3 <= EVENT_LIMITS.maxMetadataBytes ? json.length : Buffer.byteLength(json);
  if (
    eventBytes > EVENT_LIMITS.maxMetadataBytes &&
    Buffer.byteLength(JSON.stringify(event.metadata) ?? '') > EVENT_LIMITS.maxMetadataBytes
  ) {
    return {
      ok: false,
      issues: [{ path: 'metadata', code: 'too_large', message: 'metadata is larger than 32 KiB' }],
    };
  }
  if (eventBytes > EVENT_LIMITS.maxEventBytes) {
    return { ok: false, issues: [{ path: '', code: 'too_large', message: 'event is larger than 64 KiB' }] };
  }
  return { ok: true, event, json };
}

/**
 * Whether `t`, which checkTimestamp parsed, is the form toISOString() writes
 * (`YYYY-MM-DDTHH:MM:SS.sssZ`), so is the string that would be written, and is kept without
 * a Date. Not hour 24, which Date.parse takes as the next day's midnight.
 */
function isCanonicalTime(t: string): boolean {
  return (
    t.length === 24 &&
    t.charCodeAt(10) === 84 && // T
    t.charCodeAt(19) === 46 && // .
    t.charCodeAt(23) === 90 && // Z
    !(t.charCodeAt(11) === 50 && t.charCodeAt(12) === 52) // 24
  );
}

let isoAt = Number.NaN;
let isoText = '';

/** `new Date(ms).toISOString()`, remembered for the last instant (one receive time per request). */
function isoTime(ms: number): string {
  if (ms !== isoAt) {
    isoAt = ms;
    isoText = new Date(ms).toISOString();
  }
  return isoText;
}
