import { describe, expect, it } from 'vitest';
import {
  MetadataCipher,
  mayHoldSealedValue,
  parseMetadataKeys,
} from '../../src/compliance/metadata-cipher.ts';

const KEY = Buffer.alloc(32, 0x5c).toString('base64');
const cipher = () => new MetadataCipher({ keys: parseMetadataKeys(`k:${KEY}`), fields: ['email'] });
const bodyOf = (bytes: number) => `enc:v1:k:${Buffer.alloc(bytes).toString('base64url')}`;

describe('sealing values that JSON cannot write', () => {
  it('seals undefined, a function or a symbol as null', () => {
    const c = cipher();
    for (const value of [undefined, () => 1, Symbol('s')]) {
      expect(c.openValue('email', c.seal('email', value))).toBeNull();
    }
  });

  it('seals strings as UTF-8', () => {
    const c = cipher();
    const sealed = c.seal('email', 'é😀');
    // IV (12) + the JSON text "é😀" in UTF-8 (2 quotes + 2 + 4 bytes) + tag (16)
    expect(Buffer.from(sealed.slice('enc:v1:k:'.length), 'base64url')).toHaveLength(12 + 8 + 16);
    expect(c.openValue('email', sealed)).toBe('é😀');
  });
});

describe('opening stored values', () => {
  it('reads a body too short for an IV and a tag as malformed, and one just long enough as altered', () => {
    const c = cipher();
    expect(c.openValue('email', bodyOf(27))).toEqual({ encrypted: true, keyId: 'k', reason: 'malformed' });
    expect(c.openValue('email', bodyOf(28))).toEqual({ encrypted: true, keyId: 'k', reason: 'bad_tag' });
  });

  it('reads an empty key id as malformed', () => {
    expect(cipher().openValue('email', 'enc:v1::AAAA')).toEqual({
      encrypted: true,
      keyId: null,
      reason: 'malformed',
    });
  });

  it('returns metadata that is not an object as it is', () => {
    const c = cipher();
    const sealed = c.seal('email', 'x');
    for (const value of [undefined, 7, true, 'plain', sealed]) expect(c.open(value)).toBe(value);
  });
});

describe('the cheap test for sealed values in a serialised row', () => {
  it('is true when a JSON string starts with the prefix', () => {
    const sealed = cipher().seal('email', 'ada@example.com');
    expect(mayHoldSealedValue(JSON.stringify({ metadata: { email: sealed } }))).toBe(true);
  });

  it('is false when the prefix is absent or inside a string', () => {
    expect(mayHoldSealedValue(JSON.stringify({ metadata: { email: 'ada@example.com' } }))).toBe(false);
    expect(mayHoldSealedValue(JSON.stringify({ message: 'see enc:v1:k:AAAA' }))).toBe(false);
  });
});
