/** How a failed database call should be handled. */
export type DbFailure =
  /** The database is unreachable or refusing work: retry later; counts toward the circuit breaker. */
  | 'unavailable'
  /** The rows themselves were refused: retrying cannot help; they go to the dead letters. */
  | 'data'
  /** Anything else (deadlock, serialisation failure, a bug): retry, but do not blame the rows. */
  | 'transient';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/**
 * Classifies an error from `pg`. Data errors are SQLSTATE classes 22 (data exception),
 * 23 (integrity constraint) and 54 (program limit, e.g. a row too large). Availability
 * failures are network errors, class 08, 57P01–57P03 (shutdown) and 53300 (too many
 * connections), and client-side timeouts.
 */
export function classifyDbError(err: unknown): DbFailure {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = typeof e?.message === 'string' ? e.message : '';
  if (NETWORK_CODES.has(code)) return 'unavailable';
  if (/^[0-9A-Z]{5}$/.test(code)) {
    const cls = code.slice(0, 2);
    if (cls === '22' || cls === '23' || cls === '54') return 'data';
    if (cls === '08' || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300') {
      return 'unavailable';
    }
    return 'transient';
  }
  if (/timeout|terminated|Connection|connect/i.test(message)) return 'unavailable';
  return 'transient';
}
