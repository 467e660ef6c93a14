import type { NormalisedEvent } from '../events/event.schema.ts';
import { LossyNumber } from '../events/json-numbers.ts';
import type { LiveOutcome, RequestPart, StoredHeader } from './entry.ts';
import type { LiveSink } from './publisher.ts';

/** What one ingest request's records share. */
export interface LiveRequestInit {
  /** The route pattern (`/v1/events/batch`). */
  route: string;
  requestId: string;
  /** The sending key, null when none was accepted. */
  keyId: string | null;
  /** Its services; null for a key with every service (or none). */
  keyServices: readonly string[] | null;
  /** When the request was received, epoch ms. */
  at: number;
}

/** A refusal as the records carry it. */
export interface LiveRefusal {
  code: string;
  message: string;
  details?: readonly { path?: string; code?: string; message: string }[] | undefined;
}

/** A refused input is sent along only up to this size (serialised), else `inputTruncated`. */
export const MAX_INPUT_BYTES = 8 * 1024;

const SERVICE = /^[A-Za-z0-9._-]{1,64}$/;
const quote = (s: string | null) => (s === null ? 'null' : JSON.stringify(s));
const stringField = (o: unknown, name: string, max: number): string | null => {
  const v = (o as Record<string, unknown> | null)?.[name];
  return typeof v === 'string' && v.length <= max ? v : null;
};

type WithRawJson = JSON & { rawJSON(text: string): unknown };
/** Numbers the body held that a double changes are written back as the client wrote them. */
const asSent = (_key: string, value: unknown) =>
  value instanceof LossyNumber ? (JSON as WithRawJson).rawJSON(value.source) : value;

/** `"input":…` as sent, or `"inputTruncated":true` when it is too large (or cannot be written). */
function inputField(input: unknown): string {
  if (input === undefined) return '';
  let text: string | undefined;
  try {
    text = JSON.stringify(input, asSent);
  } catch {
    text = undefined;
  }
  if (text === undefined) return '';
  const fits = text.length * 3 <= MAX_INPUT_BYTES || Buffer.byteLength(text) <= MAX_INPUT_BYTES;
  return fits ? `,"input":${text}` : ',"inputTruncated":true';
}

const refusalFields = (r: LiveRefusal) =>
  `,"code":${quote(r.code)},"message":${quote(r.message)}${r.details ? `,"details":${JSON.stringify(r.details)}` : ''}`;

/**
 * The live records of one ingest request (the `outcome` frames of the protocol), made only
 * while someone listens. What its records share is written once per request; an accepted or
 * duplicate record carries the event JSON the pipeline made for the buffer, as it is, and
 * nothing is built per record but its header. `published` is set once the request's own
 * records are out, so the error path adds no second one.
 */
export class LiveRequest {
  published = false;
  /** Events in the request, once the body is read. */
  count: number | undefined;
  /** The input at an index as the client sent it (before any mapping), when the route keeps it. */
  sent: ((index: number) => unknown) | undefined;
  /** The service a refused input with none of its own stands for (a Segment key's first). */
  service: string | undefined;
  readonly #sink: LiveSink;
  readonly #part: RequestPart;
  /**
   * The records of this request that went without a body, one header per kind (outcome,
   * service, type) counting them, while the sink has not written it yet.
   */
  #counted: Map<string, { header: StoredHeader & { 6: number }; generation: number | undefined }> | undefined;

  constructor(sink: LiveSink, init: LiveRequestInit) {
    this.#sink = sink;
    this.#part = {
      keyId: init.keyId,
      keyServices: init.keyServices,
      fields: `"at":"${new Date(init.at).toISOString()}","route":${quote(init.route)},"requestId":${quote(init.requestId)},"keyId":${quote(init.keyId)}`,
    };
  }

  stored(index: number, outcome: 'accepted' | 'duplicate', event: NormalisedEvent, json: string): void {
    this.#emit(outcome, index, event.id, event.service, event.type, json);
  }

  skipped(index: number, event: NormalisedEvent): void {
    this.#emit('skipped', index, event.id, event.service, event.type, ',"code":"user_opt_out"');
  }

  /** One input refused on its own; `validated` is what the pipeline checked (a Segment call mapped). */
  refused(index: number, refusal: LiveRefusal, validated?: unknown): void {
    const input = this.sent ? this.sent(index) : validated;
    // Its id, service and type are an event's: of what was validated, never of a raw call.
    const service = stringField(validated, 'service', 64);
    this.#emit(
      'refused',
      index,
      stringField(validated, 'id', 64),
      service !== null && SERVICE.test(service) ? service : (this.service ?? null),
      stringField(validated, 'type', 128),
      refusalFields(refusal) + inputField(input),
    );
  }

  /** The whole request refused before (or instead of) its events. */
  refusedRequest(refusal: LiveRefusal): void {
    const count = this.count === undefined ? '' : `,"count":${this.count}`;
    this.#emit('refused', null, null, null, null, refusalFields(refusal) + count);
  }

  /**
   * A batch's outcomes, in request order: `valid[i]` (at request index `validIndex[i]`)
   * was answered `outcomes[i]`; a refusal's input is the one at its index in `inputs`. Each
   * list is in request order already: they are merged, not sorted.
   */
  batch(b: {
    inputs: readonly { index: number; value: unknown }[];
    rejected: readonly (LiveRefusal & { index: number })[];
    skipped: readonly { index: number; event: NormalisedEvent }[];
    valid: readonly { event: NormalisedEvent; json: string }[];
    validIndex: readonly number[];
    outcomes: readonly ('accepted' | 'duplicate')[];
  }): void {
    const { rejected, skipped, valid, validIndex, outcomes } = b;
    const validated = rejected.length > 0 ? new Map(b.inputs.map((i) => [i.index, i.value])) : undefined;
    let r = 0;
    let s = 0;
    let v = 0;
    const at = (list: readonly { index: number }[], i: number) => list[i]?.index ?? Number.POSITIVE_INFINITY;
    while (r < rejected.length || s < skipped.length || v < valid.length) {
      const next = Math.min(at(rejected, r), at(skipped, s), validIndex[v] ?? Number.POSITIVE_INFINITY);
      const refusal = rejected[r];
      const skip = skipped[s];
      const stored = valid[v];
      if (refusal && refusal.index === next) {
        this.refused(next, refusal, validated?.get(next));
        r++;
      } else if (skip && skip.index === next) {
        this.skipped(next, skip.event);
        s++;
      } else if (stored) {
        this.stored(next, outcomes[v] ?? 'accepted', stored.event, stored.json);
        v++;
      } else break;
    }
  }

  #emit(
    outcome: LiveOutcome,
    index: number | null,
    id: string | null,
    service: string | null,
    type: string | null,
    rest: string,
  ): void {
    this.published = true;
    const sink = this.#sink;
    if (index === null || !sink.wantsBody || sink.wantsBody(outcome, service, type)) {
      sink.publish(this.#part, [outcome, service, type, 0, index, id], rest);
      return;
    }
    // Without its body, a record only counts: records of one kind share a header.
    const kind = `${outcome}\n${service ?? ''}\n${type ?? ''}`;
    this.#counted ??= new Map();
    const counted = this.#counted.get(kind);
    if (counted && counted.generation === sink.generation) {
      counted.header[6]++;
      return;
    }
    const header: StoredHeader & { 6: number } = [outcome, service, type, 0, null, null, 1];
    this.#counted.set(kind, { header, generation: sink.generation });
    sink.publish(this.#part, header, '');
  }
}
