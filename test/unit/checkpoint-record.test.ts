import CRC32C from 'crc-32/crc32c.js';
import { describe, expect, it } from 'vitest';
import {
  decodeSegment,
  encodeRecord,
  MAX_RECORD_BYTES,
  RECORD_HEADER_BYTES,
  RECORD_MAGIC,
} from '../../src/worker/checkpoint/record.ts';

const crc = (bytes: Buffer) => CRC32C.buf(bytes) >>> 0;

/** A 16-byte header with a correct header CRC for whatever magic and length it is given. */
function header(magic: number, length: number, payloadCrc = 0): Buffer {
  const out = Buffer.alloc(RECORD_HEADER_BYTES);
  out.writeUInt32LE(magic, 0);
  out.writeUInt32LE(length, 4);
  out.writeUInt32LE(crc(out.subarray(0, 8)), 8);
  out.writeUInt32LE(payloadCrc, 12);
  return out;
}

const first = encodeRecord(Buffer.from('{"a":1}'));
const last = encodeRecord(Buffer.from('{"z":26}'));
const payloads = (buf: Buffer) => decodeSegment(buf).records.map((r) => r.payload.toString());

describe('checkpoint record framing', () => {
  it('frames a payload as magic, length, header CRC32C, payload CRC32C, payload', () => {
    const record = encodeRecord(Buffer.from('hello'));
    expect(record.readUInt32LE(0)).toBe(RECORD_MAGIC);
    expect(record.subarray(0, 4).toString('latin1')).toBe('TRB1');
    expect(record.readUInt32LE(4)).toBe(5);
    expect(record.readUInt32LE(8)).toBe(crc(record.subarray(0, 8)));
    expect(record.readUInt32LE(12)).toBe(crc(Buffer.from('hello')));
    expect(record.subarray(16).toString()).toBe('hello');
  });

  it('reads a record with an empty payload, also as the last bytes of a segment', () => {
    const empty = encodeRecord(Buffer.alloc(0));
    expect(empty).toHaveLength(RECORD_HEADER_BYTES);
    expect(decodeSegment(Buffer.concat([first, empty]))).toEqual({
      records: [
        { offset: 0, payload: Buffer.from('{"a":1}') },
        { offset: first.length, payload: Buffer.alloc(0) },
      ],
      corrupt: [],
      tornAt: undefined,
    });
  });

  it('gives each record its offset in the segment', () => {
    const decoded = decodeSegment(Buffer.concat([first, last]));
    expect(decoded.records.map((r) => r.offset)).toEqual([0, first.length]);
  });
});

describe('checkpoint record corruption', () => {
  it('steps over a corrupt first record to the good ones after it', () => {
    const bad = Buffer.from(first);
    bad[RECORD_HEADER_BYTES] = (bad[RECORD_HEADER_BYTES] as number) ^ 1;
    const decoded = decodeSegment(Buffer.concat([bad, last]));
    expect(decoded.corrupt).toEqual([{ offset: 0, length: first.length }]);
    expect(payloads(Buffer.concat([bad, last]))).toEqual(['{"z":26}']);
    expect(decoded.tornAt).toBeUndefined();
  });

  it('does not resynchronise on the magic inside a corrupt payload', () => {
    // The payload spells the magic; a good record starts only after it.
    const tricky = encodeRecord(Buffer.from('xxTRB1xxTRB1yy'));
    tricky[tricky.length - 1] = (tricky[tricky.length - 1] as number) ^ 1;
    const buf = Buffer.concat([first, tricky, last]);
    const decoded = decodeSegment(buf);
    expect(decoded.corrupt).toEqual([{ offset: first.length, length: tricky.length }]);
    expect(payloads(buf)).toEqual(['{"a":1}', '{"z":26}']);
  });

  it('does not take a header with another magic for a record, even when its header CRC matches', () => {
    const payload = Buffer.from('{"b":2}');
    const other = Buffer.concat([header(0x32425254, payload.length, crc(payload)), payload]); // 'TRB2'
    const buf = Buffer.concat([first, other, last]);
    expect(decodeSegment(buf).corrupt).toEqual([{ offset: first.length, length: other.length }]);
    expect(payloads(buf)).toEqual(['{"a":1}', '{"z":26}']);
  });

  it('reports the whole tail as corrupt when no good record follows a bad one', () => {
    const bad = Buffer.from(last);
    bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 1;
    const decoded = decodeSegment(Buffer.concat([first, bad]));
    expect(decoded.corrupt).toEqual([{ offset: first.length, length: bad.length }]);
    expect(decoded.tornAt).toBeUndefined();
  });

  it('reads a length above MAX_RECORD_BYTES as corruption, not as a record cut short', () => {
    const decoded = decodeSegment(Buffer.concat([first, header(RECORD_MAGIC, MAX_RECORD_BYTES + 1)]));
    expect(decoded.corrupt).toEqual([{ offset: first.length, length: RECORD_HEADER_BYTES }]);
    expect(decoded.tornAt).toBeUndefined();
  });

  it('reads a length of exactly MAX_RECORD_BYTES past the end as a record cut short', () => {
    const decoded = decodeSegment(Buffer.concat([first, header(RECORD_MAGIC, MAX_RECORD_BYTES)]));
    expect(decoded.corrupt).toEqual([]);
    expect(decoded.tornAt).toBe(first.length);
  });
});

describe('checkpoint record torn tails', () => {
  // A tail of 12 to 15 bytes holds the magic, length and header CRC but not a whole header.
  for (const rest of [12, 13, 14, 15]) {
    it(`takes a ${rest}-byte tail with a good header for a torn write`, () => {
      const decoded = decodeSegment(Buffer.concat([first, last.subarray(0, rest)]));
      expect(decoded.tornAt).toBe(first.length);
      expect(decoded.corrupt).toEqual([]);
    });

    it(`takes a ${rest}-byte tail whose header CRC fails for corruption`, () => {
      const tail = Buffer.from(last.subarray(0, rest));
      tail[4] = (tail[4] as number) ^ 1; // the length byte: the header CRC no longer matches
      const decoded = decodeSegment(Buffer.concat([first, tail]));
      expect(decoded.tornAt).toBeUndefined();
      expect(decoded.corrupt).toEqual([{ offset: first.length, length: rest }]);
    });

    it(`takes a ${rest}-byte tail with another magic for corruption, even with a matching header CRC`, () => {
      const tail = header(0x32425254, 100).subarray(0, rest);
      const decoded = decodeSegment(Buffer.concat([first, tail]));
      expect(decoded.tornAt).toBeUndefined();
      expect(decoded.corrupt).toEqual([{ offset: first.length, length: rest }]);
    });
  }

  it('takes a tail shorter than the header CRC for torn only when it starts like the magic', () => {
    for (let rest = 1; rest < 12; rest++) {
      expect(decodeSegment(Buffer.concat([first, last.subarray(0, rest)])).tornAt).toBe(first.length);
      const other = Buffer.from(last.subarray(0, rest));
      other[0] = 0;
      expect(decodeSegment(Buffer.concat([first, other])).corrupt).toEqual([
        { offset: first.length, length: rest },
      ]);
    }
  });
});
