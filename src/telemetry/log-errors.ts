/**
 * Errors as log lines may carry them. drizzle's `DrizzleQueryError` has the statement and its
 * bound parameters in its message, stack and fields (`Failed query: … params: …`, a subject id
 * among them), and PostgreSQL's own messages quote the value they refused (`invalid input
 * syntax for type uuid: "…"`). So an error from the database is logged by its class and
 * SQLSTATE only; any other error by its class, code and message, with any statement text cut.
 */

/** What a log line holds of an error. */
export interface ErrorFields {
  type: string;
  /** SQLSTATE for a database error; Node's or the driver's code (`ECONNREFUSED`) otherwise. */
  code?: string;
  message?: string;
  stack?: string;
  cause?: ErrorFields;
}

const SQLSTATE = /^[0-9A-Z]{5}$/;
const QUERY_TEXT = /Failed query:[\s\S]*/;

/** `text` without any statement drizzle put in it. */
export function scrubErrorText(text: string): string {
  return text.replace(QUERY_TEXT, 'Failed query: [statement and parameters not logged]');
}

function typeOf(err: Error): string {
  const ctor = (err as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof ctor === 'string' && ctor !== '' && ctor !== 'Object' ? ctor : err.name;
}

/** A database error: drizzle's wrapper, or pg's DatabaseError (a SQLSTATE and a severity). */
function fromDatabase(err: Error, type: string): boolean {
  if (type === 'DrizzleQueryError' || type === 'DatabaseError') return true;
  const { code, severity } = err as { code?: unknown; severity?: unknown };
  return typeof code === 'string' && SQLSTATE.test(code) && typeof severity === 'string';
}

/**
 * The loggable fields of `err` (any value), its causes included up to a few levels. A
 * string is scrubbed of statement text. `stack` only when asked (bugs: the 500 path).
 */
export function errorFields(err: unknown, opts: { stack?: boolean } = {}, depth = 0): ErrorFields {
  if (!(err instanceof Error)) {
    return { type: typeof err, message: scrubErrorText(typeof err === 'string' ? err : String(err)) };
  }
  const type = typeOf(err);
  const code = (err as { code?: unknown }).code;
  const out: ErrorFields = { type };
  if (typeof code === 'string' || typeof code === 'number') out.code = String(code);
  if (!fromDatabase(err, type)) {
    out.message = scrubErrorText(err.message);
    if (opts.stack && err.stack) out.stack = scrubErrorText(err.stack);
  }
  if (err.cause !== undefined && depth < 4) out.cause = errorFields(err.cause, opts, depth + 1);
  return out;
}

/**
 * One line for an error kept with a record (a failed retention run, a paused erasure): the
 * same rule as the logs, `DrizzleQueryError: DatabaseError 23514` for a database error.
 */
export function errorSummary(err: unknown): string {
  const parts: string[] = [];
  for (let f: ErrorFields | undefined = errorFields(err); f; f = f.cause) {
    parts.push([f.type, f.code, f.message].filter((p) => p !== undefined && p !== '').join(' '));
  }
  return parts.join(': ');
}

/**
 * A dead letter's error as a log line may hold it: `22007` for PostgreSQL's refusal
 * (`22007 invalid input syntax …: "<the value>"` is kept whole with the entry only), any
 * other reason (`malformed entry`, `delivered 6 times…`) as it is.
 */
export function deadLetterReason(error: string): string {
  return /^[0-9A-Z]{5}(?: |$)/.test(error) ? error.slice(0, 5) : scrubErrorText(error);
}
