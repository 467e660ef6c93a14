/**
 * JSON numbers that would change on the way in. `JSON.parse` turns `1e-400` into 0, drops
 * digits a double cannot hold (`0.1000000000000000000001` → 0.1, `9007199254740993` →
 * 9007199254740992) and `1e400` into Infinity (written back as `null`), without a word.
 * {@link parseJsonExact} parses as usual but puts a {@link LossyNumber} in place of each
 * such number, for the event checks to refuse with its path (`checkMetadata`).
 */

/** A number whose JSON text does not come back the same once parsed and written again. */
export class LossyNumber {
  /** What the client wrote. */
  readonly source: string;
  /** What parsing made of it. */
  readonly value: number;

  constructor(source: string, value: number) {
    this.source = source;
    this.value = value;
  }
}

/**
 * Somewhere a number token (after `:`, `,` or `[`) has an exponent or 16 or more digits and
 * dots. Any other number has at most 15 significant digits and no exponent, which a double
 * holds exactly as written (and is a safe integer), so without a match no number is at risk
 * and the text is parsed once, as usual. A string that looks like this costs a second look only.
 */
const AT_RISK = /[:,[]\s*-?\d(?:[\d.]{15}|[\d.]*[eE])/;

/** Sign, significant digits and exponent of a JSON number's text, so `1.50e1` and `15` compare equal. */
const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

function decimalKey(text: string): string | undefined {
  const m = DECIMAL.exec(text);
  if (!m) return undefined;
  const fraction = m[3] ?? '';
  const digits = `${m[2]}${fraction}`;
  const first = digits.search(/[1-9]/);
  if (first === -1) return '0';
  const significant = digits.slice(first).replace(/0+$/, '');
  const trailingZeros = digits.length - first - significant.length;
  const exponent = Number(m[4] ?? 0) - fraction.length + trailingZeros;
  return `${m[1]}${significant}e${exponent}`;
}

/** Whether `value`, written back as JSON, is the number `source` wrote (`-0` counts as 0). */
export function survivesRoundTrip(source: string, value: number): boolean {
  return Number.isFinite(value) && decimalKey(source) === decimalKey(String(value));
}

type Reviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;

const markLossy: Reviver = (_key, value, context) =>
  typeof value === 'number' && context?.source !== undefined && !survivesRoundTrip(context.source, value)
    ? new LossyNumber(context.source, value)
    : value;

/**
 * `JSON.parse`, with a {@link LossyNumber} wherever a number would not survive. The usual
 * single parse when a quick scan of the text finds no number at risk.
 * @throws SyntaxError as `JSON.parse` does.
 */
export function parseJsonExact(text: string): unknown {
  if (!AT_RISK.test(text)) return JSON.parse(text);
  return (JSON.parse as (text: string, reviver: Reviver) => unknown)(text, markLossy);
}
