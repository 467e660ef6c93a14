// The live stream's entry format, shared by the publishers (every API process) and the
// readers: one entry per flush, two fields.
//   h  JSON array of record headers: what a listener decides on (filters, visibility, stats)
//   d  the records' `outcome` frame data, one JSON line each, joined by "\n", in header order
// A reader parses only the small headers; a frame it sends is a slice of `d`, never parsed or
// serialised again.

export const LIVE_OUTCOMES = ['accepted', 'duplicate', 'skipped', 'refused'] as const;
export type LiveOutcome = (typeof LIVE_OUTCOMES)[number];

/**
 * One record's header: its outcome, the event's service and type (null when unknown), the
 * sending key, and that key's services when the record has no service of its own (the
 * visibility rule for refusals of malformed events); null otherwise, or for a key with every service.
 */
export type RecordHeader = [
  outcome: LiveOutcome,
  service: string | null,
  type: string | null,
  keyId: string | null,
  keyServices: readonly string[] | null,
];

/** An entry as a reader decoded it. */
export interface LiveEntry {
  /** The stream entry id (`1764885000000-0`). */
  id: string;
  headers: RecordHeader[];
  /** The `data:` JSON of record `index`, as bytes. */
  line(index: number): Buffer | undefined;
}

const NEWLINE = 0x0a;

/** The field/value list of one XADD: `h` headers, `d` lines. */
export function encodeEntry(headers: readonly RecordHeader[], lines: readonly string[]): string[] {
  return ['h', JSON.stringify(headers), 'd', lines.join('\n')];
}

/**
 * An entry from its id and raw fields (as `XREAD`/`XRANGE` return them with Buffer replies);
 * undefined for one this code did not write.
 */
export function decodeEntry(id: string, fields: readonly Buffer[]): LiveEntry | undefined {
  let h: Buffer | undefined;
  let d: Buffer | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]?.toString();
    if (name === 'h') h = fields[i + 1];
    else if (name === 'd') d = fields[i + 1];
  }
  if (!h || !d) return undefined;
  let headers: unknown;
  try {
    headers = JSON.parse(h.toString());
  } catch {
    return undefined;
  }
  if (!Array.isArray(headers)) return undefined;
  const data = d;
  // Line offsets, found on first use: most entries offered to a sampled listener send no frame.
  let starts: number[] | undefined;
  return {
    id,
    headers: headers as RecordHeader[],
    line(index) {
      if (!starts) {
        starts = [0];
        for (let at = data.indexOf(NEWLINE); at !== -1; at = data.indexOf(NEWLINE, at + 1))
          starts.push(at + 1);
      }
      const start = starts[index];
      if (start === undefined) return undefined;
      const next = starts[index + 1];
      return data.subarray(start, next === undefined ? data.length : next - 1);
    },
  };
}

const STREAM_ID = /^(\d{1,20})-(\d{1,20})$/;

/** A decimal string as a bigint-free comparable pair: shorter is smaller, then by text. */
function compareDecimal(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Orders two stream entry ids (`ms-seq`) as Redis does; exact for any 64-bit parts. */
export function compareIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  return (
    compareDecimal(am.replace(/^0+(?=\d)/, ''), bm.replace(/^0+(?=\d)/, '')) ||
    compareDecimal(as.replace(/^0+(?=\d)/, ''), bs.replace(/^0+(?=\d)/, ''))
  );
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
