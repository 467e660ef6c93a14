import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkMetadata } from '../../src/events/event.schema.ts';
import { LossyNumber, parseJsonExact, survivesRoundTrip } from '../../src/events/json-numbers.ts';

const lossy = (text: string) => {
  const value = (parseJsonExact(`{"n":${text}}`) as { n: unknown }).n;
  return value instanceof LossyNumber;
};

describe('numbers that would change on the way in', () => {
  it('are marked: underflow, overflow, dropped digits, integers past 2^53', () => {
    for (const text of [
      '1e-400',
      '1e400',
      '-1e400',
      '0.1000000000000000000001',
      '9007199254740993',
      '1.00000000000000001',
    ]) {
      expect([text, lossy(text)]).toEqual([text, true]);
    }
  });

  it('are not confused with numbers written another way: 1.50e1, 1E+2, -0, 0.1, 1e300', () => {
    for (const text of [
      '1.50e1',
      '1E+2',
      '-0',
      '0.0',
      '0.1',
      '1e300',
      '123456789012345',
      '12.5',
      '9007199254740992',
    ]) {
      expect([text, lossy(text)]).toEqual([text, false]);
    }
  });

  it('are refused by the metadata check with their path', () => {
    const metadata = parseJsonExact('{"a":{"b":[1,1e-400]},"c":0.1000000000000000000001,"d":1e400}');
    expect(checkMetadata(metadata).map((i) => `${i.path}:${i.code}`)).toEqual([
      'metadata.a.b.1:invalid_number',
      'metadata.c:invalid_number',
      'metadata.d:invalid_number',
    ]);
    expect(checkMetadata((parseJsonExact('{"m":1e-400}') as { m: unknown }).m)).toEqual([
      { path: 'metadata', code: 'invalid_type', message: 'must be a JSON object' },
    ]);
  });

  it('leave strings that look like numbers alone', () => {
    expect(parseJsonExact('{"s":"1e-400","t":"9007199254740993"}')).toEqual({
      s: '1e-400',
      t: '9007199254740993',
    });
  });

  it('are all found, though only texts the quick scan flags get the second look', () => {
    // Any JSON number text: the one parse must mark it exactly when it does not survive.
    const digits = fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 25 });
    const numberText = fc
      .tuple(
        fc.boolean(),
        digits.map((d) => d.replace(/^0+(?=\d)/, '')),
        fc.option(digits),
        fc.option(
          fc.tuple(
            fc.constantFrom('e', 'E'),
            fc.constantFrom('', '+', '-'),
            fc.integer({ min: 0, max: 400 }),
          ),
        ),
      )
      .map(
        ([neg, int, frac, exp]) =>
          `${neg ? '-' : ''}${int}${frac ? `.${frac}` : ''}${exp ? `${exp[0]}${exp[1]}${exp[2]}` : ''}`,
      );
    fc.assert(
      fc.property(numberText, fc.constantFrom('{"n":%}', '[%]', '[1, %]', '{"a" : \t%}'), (text, shape) => {
        const json = shape.replace('%', text);
        const value = JSON.parse(json, (_k, v, ctx?: { source?: string }) =>
          typeof v === 'number' && ctx?.source === text ? { bad: !survivesRoundTrip(text, v) } : v,
        );
        const expected = JSON.stringify(value).includes('"bad":true');
        const marked = JSON.stringify(parseJsonExact(json), (_k, v) =>
          v instanceof LossyNumber ? 'LOSSY' : v,
        );
        expect([text, marked.includes('LOSSY')]).toEqual([text, expected]);
      }),
      { numRuns: 2_000 },
    );
  });
});
