import { DrizzleQueryError } from 'drizzle-orm';

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
 * The errors `pg` and `pg-pool` throw without a code when the server cannot be reached or
 * the connection is lost. Only these are read by message: a looser match (any "timeout" or
 * "connect") also caught ioredis's "Connection is closed." and "Socket timeout", so a Redis
 * failure inside a route's database call read as `database_unavailable`.
 */
const PG_UNAVAILABLE_MESSAGE = new RegExp(
  `^(${[
    'Connection terminated', // …unexpectedly, …due to connection timeout, or plain
    'timeout exceeded when trying to connect', // pg-pool: connectionTimeoutMillis
    'Query read timeout', // query_timeout
    'timeout expired', // connectionTimeoutMillis of a lone client
    'Client has encountered a connection error and is not queryable',
    'There was an error establishing an SSL connection',
    'The server does not support SSL connections',
  ].join('|')})`,
);

/**
 * Classifies an error from `pg` (also when drizzle wraps it in a DrizzleQueryError). Data
 * errors are SQLSTATE classes 22 (data exception), 23 (integrity constraint) and 54
 * (program limit, e.g. a row too large). Availability failures are network errors, class
 * 08, 57P01–57P03 (shutdown) and 53300 (too many connections), and pg's own connection
 * and timeout errors ({@link PG_UNAVAILABLE_MESSAGE}). Anything else, an ioredis error
 * included, is `transient`: it never opens the breaker nor reads as the database being down.
 */
export function classifyDbError(err: unknown): DbFailure {
  const e = (err instanceof DrizzleQueryError && err.cause !== undefined ? err.cause : err) as {
    code?: unknown;
    message?: unknown;
  } | null;
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
  if (PG_UNAVAILABLE_MESSAGE.test(message)) return 'unavailable';
  return 'transient';
}
