/**
 * RFC 3339 date-times as clients send them in query parameters and as cursors carry them:
 * strict, so nothing `Date.parse` would also take (`2024`, `+275760-09-13T00:00:00Z`,
 * `Tue, 1 Jan 2030`, `2026-02-31T…`, `…T24:00:00Z`) reaches PostgreSQL as something else or
 * as a date it cannot hold.
 */

const RFC3339 =
  /^(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(\.\d{1,9})?([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/;

/** The instants accepted: years 0001–9999 in UTC, which PostgreSQL and `toISOString` both write as four digits. */
export const DATE_RANGE = {
  min: Date.parse('0001-01-01T00:00:00.000Z'),
  max: Date.parse('9999-12-31T23:59:59.999Z'),
} as const;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function dayExists(year: number, month: number, day: number): boolean {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return day <= (month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] as number));
}

/**
 * Epoch milliseconds of an RFC 3339 date-time with a zone (`Z` or `±hh:mm`), or undefined
 * when `text` is not one, names a day that does not exist, or lies outside {@link DATE_RANGE}.
 * Digits beyond milliseconds are truncated (events are stored to the millisecond).
 */
export function parseRfc3339(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (!m || !dayExists(Number(m[1]), Number(m[2]), Number(m[3]))) return undefined;
  const zone = m[8] as string;
  const fraction = (m[7] ?? '').slice(0, 4);
  const canonical = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${fraction}${zone === 'z' ? 'Z' : zone}`;
  const ms = Date.parse(canonical);
  if (Number.isNaN(ms) || ms < DATE_RANGE.min || ms > DATE_RANGE.max) return undefined;
  return ms;
}
