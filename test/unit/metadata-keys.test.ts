import { describe, expect, it } from 'vitest';
import { MetadataCipher, parseMetadataKeys } from '../../src/compliance/metadata-cipher.ts';
import { ConfigError } from '../../src/config.ts';

// Fixed key material, so that test names stay the same from one run to the next.
const KEY_1 = Buffer.alloc(32, 0xa1).toString('base64');
const KEY_2 = Buffer.alloc(32, 0xb2).toString('base64url');

/** The ConfigError message `raw` is refused with. */
function refusal(raw: string): string {
  try {
    parseMetadataKeys(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`${raw} was accepted`);
}

describe('METADATA_ENCRYPTION_KEYS entries', () => {
  it('reads ids of 1 to 32 characters of [A-Za-z0-9_-], in the order given', () => {
    const keys = parseMetadataKeys(`k:${KEY_1},${'Z'.repeat(32)}:${KEY_2},a_b-9:${KEY_1}`);
    expect(keys.map((k) => k.id)).toEqual(['k', 'Z'.repeat(32), 'a_b-9']);
    expect(keys.map((k) => k.key.export().toString('hex'))).toEqual([
      'a1'.repeat(32),
      'b2'.repeat(32),
      'a1'.repeat(32),
    ]);
  });

  it('splits an entry at its first colon', () => {
    expect(refusal(`k:${KEY_1}:x`)).toContain('entry 1 ("k"): the key must be base64 of exactly 32 bytes');
  });

  it.each([
    ['an entry without a colon', 'no-colon-here', 'entry 1 is not id:base64'],
    ['an entry without a colon after a good one', `k:${KEY_1},nocolon`, 'entry 2 is not id:base64'],
    ['an empty id', `:${KEY_1}`, 'entry 1: the id must be 1–32 of [A-Za-z0-9_-]'],
    ['an id with a space', `my key:${KEY_1}`, 'entry 1: the id must be 1–32 of [A-Za-z0-9_-]'],
    ['an id of 33 characters', `${'k'.repeat(33)}:${KEY_1}`, 'entry 1: the id must be'],
    ['a repeated id', `k:${KEY_1},j:${KEY_2},k:${KEY_2}`, 'entry 3 ("k"): the id is used twice'],
    ['a key with text before the base64', `k:!!${KEY_1}`, 'entry 1 ("k"): the key must be base64'],
    ['a key with text after the base64', `k:${KEY_1}!!`, 'entry 1 ("k"): the key must be base64'],
    ['a key of 31 bytes', `k:${Buffer.alloc(31).toString('base64')}`, 'exactly 32 bytes'],
    ['an empty key', 'k:', 'entry 1 ("k"): the key must be base64 of exactly 32 bytes'],
  ])('refuses %s', (_what, raw, message) => {
    const text = refusal(raw);
    expect(text).toContain('METADATA_ENCRYPTION_KEYS: ');
    expect(text).toContain(message);
  });

  it('accepts the same material under two ids', () => {
    expect(parseMetadataKeys(`a:${KEY_1},b:${KEY_1}`).map((k) => k.id)).toEqual(['a', 'b']);
  });
});

describe('MetadataCipher without keys', () => {
  it('refuses to be built with no key', () => {
    expect(() => new MetadataCipher({ keys: [], fields: ['email'] })).toThrow(ConfigError);
    expect(() => new MetadataCipher({ keys: [], fields: [] })).toThrow(
      'invalid configuration:\n  METADATA_ENCRYPTION_KEYS: no key given',
    );
  });
});
