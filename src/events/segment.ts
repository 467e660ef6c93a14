import { hash } from 'node:crypto';
import { LossyNumber } from './json-numbers.ts';

/**
 * Segment's Tracking API calls mapped onto Tributary's event (ARCHITECTURE §12), without
 * I/O: a call (with its batch's `context`, `integrations` and `sentAt`, the write key's
 * service and the receive time) becomes the native event input that `parseEvent` then
 * validates, so every native rule and limit still applies.
 */

/** Segment's own limits (its HTTP Tracking API documentation). */
export const SEGMENT_LIMITS = {
  /**
   * One call, measured as the event it becomes (serialised as stored: the call's fields plus
   * id, service and times, a couple of hundred bytes more). Over it, that call is refused
   * inside the `200` (`event_too_large`, by the ingest pipeline, which serialises it anyway).
   */
  maxCallBytes: 32 * 1024,
  /** A whole request, before and after gzip decompression. */
  maxRequestBytes: 500 * 1024,
  /** Calls in one `/v1/batch` (or `/v1/import`) request. */
  maxBatchCalls: 2500,
} as const;

export const SEGMENT_CALL_TYPES = ['track', 'identify', 'page', 'screen', 'group', 'alias'] as const;
export type SegmentCallType = (typeof SEGMENT_CALL_TYPES)[number];

export function isSegmentCallType(value: unknown): value is SegmentCallType {
  return typeof value === 'string' && (SEGMENT_CALL_TYPES as readonly string[]).includes(value);
}

/**
 * The UUIDv5 namespace of event ids derived from a non-UUID `messageId` (a random UUID
 * chosen once for Tributary; it must never change, or a retry sent across an upgrade would
 * no longer be a duplicate).
 */
export const MESSAGE_ID_NAMESPACE = 'e71a6375-fde9-49c3-bb49-ddac1a85d712';

const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

const VARIANT = '89ab';

/**
 * RFC 9562 UUID version 5 (SHA-1) of `name` (UTF-8) in `namespace`: the first 16 bytes of
 * the hash, version nibble 5, variant bits 10. One-shot `hash` (no Hash object per call:
 * a third of the cost on a batch of 100).
 */
export function uuidV5(namespace: string, name: string): string {
  const ns = Buffer.from(namespace.replaceAll('-', ''), 'hex');
  const hex = hash('sha1', Buffer.concat([ns, Buffer.from(name, 'utf8')]), 'hex');
  const variant = VARIANT[Number.parseInt(hex[16] as string, 16) & 3] as string;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/**
 * The event id of a call: its `messageId` lower-cased when that is a UUID, else a UUIDv5 of
 * service and messageId, so a retry of a non-UUID id (`node-next-<ms>-<uuid>` from
 * analytics-node) is still a duplicate, and two services' equal ids stay apart.
 */
export function eventIdOf(service: string, messageId: string): string {
  return GUID.test(messageId)
    ? messageId.toLowerCase()
    : uuidV5(MESSAGE_ID_NAMESPACE, `${service}\u0000${messageId}`);
}

/** A date as Segment's SDKs send it (ISO 8601), in epoch ms; undefined when it is not one. */
function dateMs(value: unknown): number | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : undefined;
}

let lastSentAt: unknown;
let lastSentAtMs: number | undefined;

/** {@link dateMs} of a `sentAt`, remembered for the last one: the calls of a batch share it. */
function sentAtMs(value: unknown): number | undefined {
  if (value !== lastSentAt) {
    lastSentAt = value;
    lastSentAtMs = dateMs(value);
  }
  return lastSentAtMs;
}

/**
 * Segment's clock-skew correction: with a client `timestamp` and the `sentAt` of the same
 * clock, the event happened `sentAt − timestamp` before it was received. Without `sentAt`
 * the timestamp is taken as is; without a timestamp, the receive time. Undefined when the
 * timestamp is not a date or the result is not one either.
 */
export function correctedTimestamp(
  receivedAt: number,
  sentAt: unknown,
  timestamp: unknown,
): number | undefined {
  if (timestamp == null) return receivedAt;
  const ts = dateMs(timestamp);
  if (ts === undefined) return undefined;
  const sent = sentAtMs(sentAt);
  const ms = sent === undefined ? ts : receivedAt - (sent - ts);
  // Outside the range a Date holds (±8.64e15 ms), `toISOString` would throw.
  return Math.abs(ms) <= 8.64e15 ? ms : undefined;
}

/** What a batch says for all its calls. */
export interface SegmentBatchFields {
  context?: unknown;
  integrations?: unknown;
  sentAt?: unknown;
}

export interface SegmentCallOptions {
  /** The call type the route names (`/v1/track` …); for `/v1/batch`, each call's own `type`. */
  routeType?: SegmentCallType | undefined;
  /** The write key's first service. */
  service: string;
  /** Receive time, epoch ms. */
  receivedAt: number;
  batch?: SegmentBatchFields | undefined;
}

export interface SegmentRefusal {
  code: 'invalid_event';
  message: string;
  details?: { path: string; code: string; message: string }[];
}

export type MappedCall = { ok: true; input: Record<string, unknown> } | ({ ok: false } & SegmentRefusal);

/** Fields of the call that become the event's own; `writeKey` is a secret and never stored. */
const OWN_FIELDS: ReadonlySet<string> = new Set(['type', 'userId', 'anonymousId', 'writeKey']);

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof LossyNumber);

const invalid = (path: string, code: string, message: string): MappedCall => ({
  ok: false,
  code: 'invalid_event',
  message: 'the event is invalid',
  details: [{ path, code, message }],
});

/** A subject id as Segment's SDKs may send it: a number (some send integer ids) as its text. */
function subjectId(value: unknown): unknown {
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : value;
}

/** The batch's object merged under the call's own (the call wins, key by key). */
function merged(batchValue: unknown, callValue: unknown): unknown {
  if (!isPlainObject(batchValue)) return callValue;
  if (callValue === undefined || callValue === null) return { ...batchValue };
  return isPlainObject(callValue) ? { ...batchValue, ...callValue } : callValue;
}

/**
 * One Segment call as the native event input (`parseEvent` validates it next).
 *
 * - `id`: {@link eventIdOf} the `messageId`; none: left for `parseEvent` to make a random one.
 * - `type`: the track call's `event` (required), else the call type.
 * - `userId`, `anonymousId`: as sent (a number as its text).
 * - `timestamp`: {@link correctedTimestamp} of the call's `timestamp` (else
 *   `originalTimestamp`) and `sentAt` (else the batch's).
 * - `metadata`: every other field of the call as sent, plus `segmentType` (the call type),
 *   the batch's `context`/`integrations` merged in, the batch's `sentAt` when the call has
 *   none, and `messageId` when it was not a UUID (the id is then derived from it). The
 *   original call can be rebuilt from the event: `{...metadata, type: segmentType,
 *   event: type (track), messageId: messageId ?? id, userId, anonymousId}`.
 */
export function mapSegmentCall(call: unknown, opts: SegmentCallOptions): MappedCall {
  if (!isPlainObject(call)) return invalid('', 'invalid_type', 'a call must be a JSON object');
  const callType = opts.routeType ?? call.type;
  if (!isSegmentCallType(callType)) {
    return invalid('type', 'invalid_value', `must be one of ${SEGMENT_CALL_TYPES.join(', ')}`);
  }
  let type: unknown = callType;
  if (callType === 'track') {
    type = call.event;
    if (typeof type !== 'string' || type === '')
      return invalid('event', 'required', 'a track call needs an event name');
  }
  if (callType === 'alias') {
    if (call.userId == null) return invalid('userId', 'required', 'an alias call needs a userId');
    if (typeof call.previousId !== 'string' && typeof call.previousId !== 'number') {
      return invalid('previousId', 'required', 'an alias call needs a previousId');
    }
  }
  const { messageId } = call;
  if (messageId != null && typeof messageId !== 'string' && typeof messageId !== 'number') {
    return invalid('messageId', 'invalid_type', 'must be a string');
  }
  const messageText = messageId == null || messageId === '' ? undefined : String(messageId);

  const sentAt = call.sentAt ?? opts.batch?.sentAt;
  const occurredMs = correctedTimestamp(opts.receivedAt, sentAt, call.timestamp ?? call.originalTimestamp);
  if (occurredMs === undefined) {
    const path = call.timestamp != null ? 'timestamp' : 'originalTimestamp';
    return invalid(path, 'invalid_format', 'must be an ISO 8601 date-time');
  }

  const metadata: Record<string, unknown> = { segmentType: callType };
  for (const key of Object.keys(call)) {
    if (OWN_FIELDS.has(key) || (key === 'event' && callType === 'track')) continue;
    if (key === 'messageId' && (messageText === undefined || GUID.test(messageText))) continue;
    metadata[key] = call[key];
  }
  if (callType === 'alias') metadata.previousId = subjectId(call.previousId);
  const context = merged(opts.batch?.context, call.context);
  if (context !== undefined) metadata.context = context;
  const integrations = merged(opts.batch?.integrations, call.integrations);
  if (integrations !== undefined) metadata.integrations = integrations;
  if (call.sentAt === undefined && opts.batch?.sentAt !== undefined) metadata.sentAt = opts.batch.sentAt;

  const input: Record<string, unknown> = {
    service: opts.service,
    type,
    timestamp: new Date(occurredMs).toISOString(),
    metadata,
  };
  if (messageText !== undefined) input.id = eventIdOf(opts.service, messageText);
  if (call.userId != null) input.userId = subjectId(call.userId);
  if (call.anonymousId != null) input.anonymousId = subjectId(call.anonymousId);
  return { ok: true, input };
}
