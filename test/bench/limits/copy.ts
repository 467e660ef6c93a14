/**
 * Limit: COPY of the same rows (the ~300-byte events, with the columns Tributary's worker
 * writes) into the same partitioned `events` table, CHUNK rows per COPY, for SECONDS.
 * The next chunk is built while the previous one is copied. Prints one JSON line.
 */

import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { eventJson } from '../payload.ts';

const seconds = Number(process.env.SECONDS ?? 5);
const chunk = Number(process.env.CHUNK ?? 10_000);
const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
await client.connect();

/** COPY text format: tab-separated, `\N` for null, backslash escapes. */
const esc = (s: string) =>
  s.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');

function buildChunk(): string {
  const now = new Date().toISOString();
  const lines = new Array<string>(chunk);
  for (let i = 0; i < chunk; i++) {
    const e = JSON.parse(eventJson()) as Record<string, unknown>;
    lines[i] = [e.id, e.timestamp, now, e.service, e.type, e.userId, '\\N', esc(JSON.stringify(e.metadata))]
      .map(String)
      .join('\t');
  }
  return `${lines.join('\n')}\n`;
}

let rows = 0;
let next = buildChunk();
const started = performance.now();
const deadline = started + seconds * 1000;
while (performance.now() < deadline) {
  const body = next;
  const copy = client.query(
    copyFrom(
      'COPY events (id, occurred_at, received_at, service, type, user_id, message, metadata) FROM STDIN',
    ),
  );
  const done = pipeline(Readable.from([body]), copy);
  next = buildChunk();
  await done;
  rows += chunk;
}
const elapsed = (performance.now() - started) / 1000;
process.stdout.write(`${JSON.stringify({ events: rows, seconds: elapsed })}\n`);
await client.end();
