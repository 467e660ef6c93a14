import { type Logger, pino } from 'pino';
import { errorFields, scrubErrorText } from './log-errors.ts';

/** Whatever is logged as `err`: class, code and message, never statement text or bound parameters. */
const serializers = {
  err: (err: unknown) => (typeof err === 'string' ? scrubErrorText(err) : errorFields(err, { stack: true })),
};

/**
 * JSON logs on stdout. Never log API keys: the auth headers are redacted as a safety net.
 * Errors go through {@link errorFields}: a database error is logged by class and SQLSTATE.
 * Lines are written asynchronously (one write for whatever piled up while the previous
 * one was in flight, instead of a blocking write per line) and flushed when the process exits.
 */
export function createLogger(level: string, base: Record<string, unknown> = {}): Logger {
  const destination = pino.destination({ dest: 1, sync: false });
  process.once('exit', () => {
    try {
      destination.flushSync();
    } catch {
      // Nothing more can be done for log lines at exit.
    }
  });
  return pino(
    {
      level,
      base: { service: 'tributary', pid: process.pid, ...base },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers,
      redact: {
        paths: ['req.headers.authorization', 'req.headers["x-api-key"]', 'key', '*.key'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

/** A logger that writes nothing, for tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
