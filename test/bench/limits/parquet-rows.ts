/**
 * The rows the Parquet scenario archives: a table shaped like `events` (plus the
 * `anonymized` flag the archive carries) in a private database, filled with realistic
 * events one month long, microsecond timestamps in time order, and a handful of rows whose
 * values are hard to carry through text formats (the read-back sample).
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { eventJson } from '../payload.ts';

export const TABLE = 'events';

const DDL = `CREATE TABLE ${TABLE} (
  id uuid NOT NULL,
  occurred_at timestamptz NOT NULL,
  received_at timestamptz NOT NULL,
  service text NOT NULL,
  type text NOT NULL,
  user_id text,
  message text,
  metadata jsonb,
  anonymized boolean NOT NULL DEFAULT false,
  PRIMARY KEY (occurred_at, id)
)`;

/** 2026-04-01T00:00:00Z in microseconds since the epoch: the month archived. */
const MONTH_START_US = 1_775_001_600_000_000n;
const MONTH_US = 30n * 86_400n * 1_000_000n;

const MESSAGES = [
  'GET /checkout/confirm 200 in 41 ms',
  'payment failed: card declined, code "51"',
  'user signed up',
  'search "boots, red" returned 0 results',
  'Bestellung bestätigt – Grüße aus München',
];

/** COPY text format: tab-separated, `\N` for null, backslash escapes. */
const esc = (s: string) =>
  s.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');

/** `us` microseconds since the epoch as an ISO timestamp with all six fraction digits, UTC. */
export function isoMicros(us: bigint): string {
  const ms = us / 1000n - (us % 1000n < 0n ? 1n : 0n);
  const frac = ((us % 1_000_000n) + 1_000_000n) % 1_000_000n;
  return `${new Date(Number(ms)).toISOString().slice(0, 19)}.${frac.toString().padStart(6, '0')}Z`;
}

function rowLine(n: number, total: number): string {
  const e = JSON.parse(eventJson()) as {
    id: string;
    service: string;
    type: string;
    userId: string;
    metadata: unknown;
  };
  // Evenly spread over the month, in time order, jittered so every microsecond digit varies.
  const step = MONTH_US / BigInt(total);
  const occurred = MONTH_START_US + step * BigInt(n) + BigInt(Math.floor(Math.random() * Number(step)));
  const received = occurred + BigInt(Math.floor(Math.random() * 2_000_000));
  const message = n % 3 === 0 ? esc(MESSAGES[(n / 3) % MESSAGES.length] ?? '') : '\\N';
  const userId = n % 10 === 0 ? '\\N' : e.userId;
  const metadata = n % 20 === 0 ? '\\N' : esc(JSON.stringify(e.metadata));
  const anonymized = n % 50 === 0 ? 't' : 'f';
  return [
    e.id,
    isoMicros(occurred),
    isoMicros(received),
    e.service,
    e.type,
    userId,
    message,
    metadata,
    anonymized,
  ].join('\t');
}

/** Values that text formats get wrong: NULL vs empty, quotes, line breaks, unicode, JSON numbers. */
const TRICKY_TEXT = [
  null,
  '',
  ' ',
  '  padded  ',
  'He said "hi", then left',
  '"',
  '""',
  'a,b,c',
  'line one\nline two',
  'crlf\r\nend',
  'lone\rcarriage',
  'tab\there',
  'back\\slash C:\\path\\N',
  '\\N',
  '\\.',
  'NULL',
  'null',
  'Grüße 😀 日本語 עברית',
  'zero\u200bwidth',
  "it's",
  '=1+2',
];

const TRICKY_JSON = [
  null,
  '{}',
  'null',
  '"just a string"',
  '[1, "two", null, true]',
  '{"q": "say \\"hi\\", ok", "nl": "a\\nb", "comma": "x,y", "tab": "\\t", "bs": "\\\\N"}',
  '{"unicode": "Grüße 😀 \\u00e9", "empty": "", "nul-like": "\\\\u0000"}',
  '{"n": [1.10, 0.000001, -0, 1e-7, 123456789012345678901234567890, 3.141592653589793238462643]}',
  '{"deep": {"a": {"b": {"c": [[], {}]}}}, "bool": false, "nothing": null}',
  '{"key with spaces": 1, "": "empty key", "\\"quoted\\"": 2}',
];

/** Timestamps a text round trip can truncate or shift: zero and full fractions, before 1970, far ahead. */
const TRICKY_TIMES_US = [
  MONTH_START_US,
  MONTH_START_US + 1n,
  MONTH_START_US + 999_999n,
  MONTH_START_US + MONTH_US - 1n,
  -1n,
  -86_400_000_001n,
  4_102_444_800_123_456n,
  951_782_400_500_000n,
];

/** The tricky rows, with ids 00000000-0000-4000-8000-<n>, so the read-back can find them. */
function trickyRows(): string[][] {
  const rows: string[][] = [];
  const count = Math.max(TRICKY_TEXT.length, TRICKY_JSON.length, TRICKY_TIMES_US.length);
  for (let i = 0; i < count; i++) {
    const text = TRICKY_TEXT[i % TRICKY_TEXT.length] ?? null;
    const json = TRICKY_JSON[i % TRICKY_JSON.length] ?? null;
    const t = TRICKY_TIMES_US[i % TRICKY_TIMES_US.length] ?? 0n;
    const nul = (v: string | null) => (v === null ? '\\N' : esc(v));
    rows.push([
      `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      isoMicros(t),
      isoMicros(t + BigInt(i)),
      i % 2 === 0 ? 'checkout' : 'sérvice-ü',
      text === null ? 'type.null' : `type ${esc(text)}`,
      nul(i % 3 === 0 ? '' : text),
      nul(text),
      nul(json),
      i % 2 === 0 ? 't' : 'f',
    ]);
  }
  return rows;
}

export const TRICKY_ID_PREFIX = '00000000-0000-4000-8000-';

/** Creates the table and fills it with `total` realistic rows plus the tricky ones; VACUUM ANALYZE after. */
export async function loadRows(client: pg.Client, total: number, chunk = 20_000): Promise<void> {
  await client.query(DDL);
  const copyChunk = async (lines: string[]) => {
    const copy = client.query(copyFrom(`COPY ${TABLE} FROM STDIN`));
    await pipeline(Readable.from([`${lines.join('\n')}\n`]), copy);
  };
  await copyChunk(trickyRows().map((r) => r.join('\t')));
  for (let start = 0; start < total; start += chunk) {
    const lines: string[] = [];
    for (let n = start; n < Math.min(total, start + chunk); n++) lines.push(rowLine(n, total));
    await copyChunk(lines);
  }
  // Sets hint bits and visibility now, so the first pipeline measured does not pay for them.
  await client.query(`VACUUM (FREEZE, ANALYZE) ${TABLE}`);
}
