import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * A webhook source's signature (ARCHITECTURE §15): the header holds the hex HMAC-SHA256 of
 * the raw body under the source's secret, optionally prefixed `sha256=` (GitHub's form).
 * Compared in constant time; anything that is not 64 hex digits is simply wrong.
 */
export function signatureValid(
  secret: string,
  rawBody: Buffer | string,
  header: string | undefined,
): boolean {
  if (header === undefined) return false;
  const hex = header.trim().replace(/^sha256=/i, '');
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return false;
  const expected = createHmac('sha256', secret).update(rawBody).digest();
  return timingSafeEqual(expected, Buffer.from(hex, 'hex'));
}

/** The header value a sender puts on `body` (what the README's examples and the tests compute). */
export function signatureOf(secret: string, rawBody: Buffer | string): string {
  return `sha256=${createHmac('sha256', secret).update(rawBody).digest('hex')}`;
}
