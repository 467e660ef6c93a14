import CRC32C from 'crc-32/crc32c.js';

/**
 * One checkpoint record, little-endian:
 *
 * | offset | size | field                                      |
 * | ------ | ---- | ------------------------------------------ |
 * | 0      | 4    | magic `TRB1`, to find the next record      |
 * | 4      | 4    | payload length                             |
 * | 8      | 4    | CRC32C of bytes 0–7 (the header)           |
 * | 12     | 4    | CRC32C of the payload                      |
 * | 16     | n    | payload (UTF-8 JSON)                       |
 *
 * The header has its own CRC so that a record running past the end of the file can be
 * told apart: a good header means a write cut short (torn), a bad one means corruption.
 * The magic lets a reader step over a corrupt record to the next good one.
 */
export const RECORD_MAGIC = 0x31425254; // 'TRB1' read as little-endian u32
export const RECORD_HEADER_BYTES = 16;
/** Larger lengths are corruption: a batch is at most BATCH_SIZE × 64 KiB events. */
export const MAX_RECORD_BYTES = 1 << 30;

const crc = (bytes: Buffer) => CRC32C.buf(bytes) >>> 0;

/** Frames a payload as one record. */
export function encodeRecord(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payload.length);
  out.writeUInt32LE(RECORD_MAGIC, 0);
  out.writeUInt32LE(payload.length, 4);
  out.writeUInt32LE(crc(out.subarray(0, 8)), 8);
  out.writeUInt32LE(crc(payload), 12);
  payload.copy(out, RECORD_HEADER_BYTES);
  return out;
}

export interface DecodedSegment {
  /** Good records, in file order. */
  records: { offset: number; payload: Buffer }[];
  /** Byte ranges that failed their checks and were stepped over. */
  corrupt: { offset: number; length: number }[];
  /**
   * Offset of an incomplete last record (a write cut short by a crash), when there is one.
   * Its entries were never acknowledged, so truncating here loses nothing.
   */
  tornAt: number | undefined;
}

type Probe = { kind: 'ok'; end: number } | { kind: 'short' } | { kind: 'bad' };
const SHORT: Probe = { kind: 'short' };
const BAD: Probe = { kind: 'bad' };

function probe(buf: Buffer, at: number): Probe {
  if (buf.length - at < RECORD_HEADER_BYTES) return SHORT;
  if (buf.readUInt32LE(at) !== RECORD_MAGIC) return BAD;
  if (crc(buf.subarray(at, at + 8)) !== buf.readUInt32LE(at + 8)) return BAD;
  const length = buf.readUInt32LE(at + 4);
  if (length > MAX_RECORD_BYTES) return BAD;
  const end = at + RECORD_HEADER_BYTES + length;
  if (end > buf.length) return SHORT;
  const good = crc(buf.subarray(at + RECORD_HEADER_BYTES, end)) === buf.readUInt32LE(at + 12);
  return good ? { kind: 'ok', end } : BAD;
}

/** The next offset after `from` where a complete, valid record starts, or -1. */
function resync(buf: Buffer, from: number): number {
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(RECORD_MAGIC, 0);
  for (let at = buf.indexOf(magic, from); at !== -1; at = buf.indexOf(magic, at + 1)) {
    if (probe(buf, at).kind === 'ok') return at;
  }
  return -1;
}

/**
 * Splits a segment into its records. A record that fails its checks with a good record
 * after it is corrupt (it was acknowledged, its data is gone: counted and quarantined);
 * an incomplete record at the very end is a torn write (never acknowledged: truncated).
 * A complete last record with a bad checksum is corrupt too: a torn write cannot
 * produce a full-length record whose bytes differ, so that was a fault of the medium.
 */
export function decodeSegment(buf: Buffer): DecodedSegment {
  const out: DecodedSegment = { records: [], corrupt: [], tornAt: undefined };
  let at = 0;
  while (at < buf.length) {
    const p = probe(buf, at);
    if (p.kind === 'ok') {
      out.records.push({ offset: at, payload: buf.subarray(at + RECORD_HEADER_BYTES, p.end) });
      at = p.end;
      continue;
    }
    const next = resync(buf, at + 1);
    if (next !== -1) {
      out.corrupt.push({ offset: at, length: next - at });
      at = next;
      continue;
    }
    if (p.kind === 'short' && isTornTail(buf, at)) out.tornAt = at;
    else out.corrupt.push({ offset: at, length: buf.length - at });
    break;
  }
  return out;
}

/**
 * An incomplete header that starts like one, or a good header whose record runs past
 * the end of the file.
 */
function isTornTail(buf: Buffer, at: number): boolean {
  const rest = buf.length - at;
  if (rest < 12) {
    const magic = Buffer.alloc(4);
    magic.writeUInt32LE(RECORD_MAGIC, 0);
    return magic.subarray(0, Math.min(4, rest)).equals(buf.subarray(at, at + Math.min(4, rest)));
  }
  return buf.readUInt32LE(at) === RECORD_MAGIC && crc(buf.subarray(at, at + 8)) === buf.readUInt32LE(at + 8);
}
