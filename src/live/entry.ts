// The live stream's entry format, shared by the publishers (every API process) and the
// readers: one entry per flush of one process, four fields.
//   q  JSON array, per request: [keyId, keyServices] (for visibility)
//   r  per request, the frame fields its records share (`"at":…,"route":…,"requestId":…,
//      "keyId":…`), joined by "\n"
//   h  JSON array, per record: [outcome, service, type, request, index, id], and a count
//      as a 7th element for a header that stands for that many records without a body
//   d  per record, the rest of its frame: the event JSON as the pipeline made it (accepted,
//      duplicate), or `,"code":…` and what follows (skipped, refused); joined by "\n". Empty
//      for a record that goes without its body (over the publisher's budget of bodies per
//      second): it counts in `stats` but is never sent as a frame.
// A publisher writes the event JSON it already has and builds no line per record; a reader
// parses `q` and `h` only, and composes an `outcome` frame out of byte slices for the records
// it sends (at most LIVE_MAX_EVENTS_PER_S a second per listener), never for the others.

export const LIVE_OUTCOMES = ['accepted', 'duplicate', 'skipped', 'refused'] as const;
export type LiveOutcome = (typeof LIVE_OUTCOMES)[number];

/**
 * What a listener decides on: a record's outcome, its event's service and type (null when
 * unknown), the sending key, and that key's services (null for a key with every service).
 */
export type RecordHeader = [
  outcome: LiveOutcome,
  service: string | null,
  type: string | null,
  keyId: string | null,
  keyServices: readonly string[] | null,
  /** Records it stands for: 1, or more for records of one request that went without a body. */
  count: number,
];

/** What the records of one request share: made once per request. */
export interface RequestPart {
  keyId: string | null;
  keyServices: readonly string[] | null;
  /** The frame fields every record of the request has, without braces. */
  fields: string;
}

/**
 * A record as published: outcome, service, type, its request's place in the entry (set by
 * the publisher), its place in the request (null for a request refused as a whole), event id;
 * for records of one request that went without a body, one header with their count.
 */
export type StoredHeader =
  | [
      outcome: LiveOutcome,
      service: string | null,
      type: string | null,
      request: number,
      index: number | null,
      id: string | null,
    ]
  | [
      outcome: LiveOutcome,
      service: string | null,
      type: string | null,
      request: number,
      index: null,
      id: null,
      count: number,
    ];

/** An entry as a reader decoded it. */
export interface LiveEntry {
  /** The stream entry id (`1764885000000-0`). */
  id: string;
  headers: RecordHeader[];
  /** The `data:` JSON of record `index`'s `outcome` frame, as bytes. */
  frame(index: number): Buffer | undefined;
  /** Whether record `index` carries its body, so it can be sent as a frame. */
  sendable(index: number): boolean;
}

/**
 * The field/value list of one XADD: `data` holds the rest of each header's frame, in order,
 * separated by "\n".
 */
export function encodeEntry(
  requests: readonly RequestPart[],
  headers: readonly StoredHeader[],
  data: string | Buffer,
): (string | Buffer)[] {
  return [
    'q',
    JSON.stringify(requests.map((r) => [r.keyId, r.keyServices])),
    'r',
    requests.map((r) => r.fields).join('\n'),
    'h',
    JSON.stringify(headers),
    'd',
    data,
  ];
}

const NEWLINE = 0x0a;
const EVENT_FIELD = Buffer.from(',"event":');
const CLOSE = Buffer.from('}');

/** The `i`th "\n"-separated part of `data`, offsets found on first use. */
function lines(data: Buffer): (i: number) => Buffer | undefined {
  let starts: number[] | undefined;
  return (i) => {
    if (!starts) {
      starts = [0];
      for (let at = data.indexOf(NEWLINE); at !== -1; at = data.indexOf(NEWLINE, at + 1)) starts.push(at + 1);
    }
    const start = starts[i];
    if (start === undefined) return undefined;
    const next = starts[i + 1];
    return data.subarray(start, next === undefined ? data.length : next - 1);
  };
}

const quote = (s: string | null) => (s === null ? 'null' : JSON.stringify(s));

/**
 * An entry from its id and raw fields (as `XREAD`/`XRANGE` return them with Buffer replies);
 * undefined for one this code did not write.
 */
export function decodeEntry(id: string, fields: readonly Buffer[]): LiveEntry | undefined {
  const field = new Map<string, Buffer>();
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i];
    const value = fields[i + 1];
    if (name && value) field.set(name.toString(), value);
  }
  const [q, r, h, d] = [field.get('q'), field.get('r'), field.get('h'), field.get('d')];
  if (!q || !r || !h || !d) return undefined;
  let requests: [string | null, readonly string[] | null][];
  let stored: StoredHeader[];
  try {
    requests = JSON.parse(q.toString());
    stored = JSON.parse(h.toString());
  } catch {
    return undefined;
  }
  if (!Array.isArray(requests) || !Array.isArray(stored)) return undefined;
  const headers = stored.map(([outcome, service, type, request, , , count]): RecordHeader => {
    const [keyId = null, keyServices = null] = requests[request] ?? [];
    return [outcome, service, type, keyId, keyServices, typeof count === 'number' && count > 0 ? count : 1];
  });
  const requestFields = lines(r);
  const rest = lines(d);
  return {
    id,
    headers,
    sendable: (i) => (rest(i)?.length ?? 0) > 0,
    frame(i) {
      const header = stored[i];
      const shared = header && requestFields(header[3]);
      const tail = rest(i);
      if (!header || !shared || !tail || tail.length === 0) return undefined;
      const [outcome, service, type, , index, eventId] = header;
      const withEvent = outcome === 'accepted' || outcome === 'duplicate';
      return Buffer.concat([
        Buffer.from(`{"outcome":${quote(outcome)},`),
        shared,
        Buffer.from(
          `,"index":${index},"id":${quote(eventId)},"service":${quote(service)},"type":${quote(type)}`,
        ),
        ...(withEvent ? [EVENT_FIELD, tail] : [tail]),
        CLOSE,
      ]);
    },
  };
}

const STREAM_ID = /^(\d{1,20})-(\d{1,20})$/;

/** A decimal string without leading zeros compares by length, then by text. */
function compareDecimal(a: string, b: string): number {
  const x = a.replace(/^0+(?=\d)/, '');
  const y = b.replace(/^0+(?=\d)/, '');
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Orders two stream entry ids (`ms-seq`) as Redis does; exact for any 64-bit parts. */
export function compareIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  return compareDecimal(am, bm) || compareDecimal(as, bs);
}

/** Where a client resumes: the `Last-Event-ID` of an outcome frame, `ENTRY/INDEX`. */
export interface ResumePoint {
  entry: string;
  index: number;
}

/** A `Last-Event-ID` header as a resume point; undefined when it is not one this API sent. */
export function parseLastEventId(value: string | undefined): ResumePoint | undefined {
  if (value === undefined) return undefined;
  const slash = value.indexOf('/');
  if (slash < 0) return undefined;
  const entry = value.slice(0, slash);
  const index = value.slice(slash + 1);
  if (!STREAM_ID.test(entry) || !/^\d{1,9}$/.test(index)) return undefined;
  return { entry, index: Number(index) };
}
