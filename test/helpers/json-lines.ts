import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';

/** Calls `onLine` with each line of `stream` that parses as a JSON object (pino log lines); skips the rest. */
export function onJsonLines(stream: Readable | null, onLine: (line: Record<string, unknown>) => void): void {
  if (!stream) return;
  createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (text) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof parsed === 'object' && parsed !== null) onLine(parsed as Record<string, unknown>);
  });
}
