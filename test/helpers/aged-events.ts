import { expect } from 'vitest';
import type { ArchivedRow } from './archive-reader.ts';
import { call, type Stack } from './stack.ts';
import { waitUntilStored } from './stored-once.ts';

const DAY_MS = 86_400_000;

/** An event as sent, with the age it was given. */
export interface SentEvent {
  id: string;
  service: string;
  type: string;
  timestamp: string;
  userId?: string;
  anonymousId?: string;
  message?: string;
  metadata?: Record<string, unknown>;
  ageDays: number;
}

/** Retention used by the passes under test: 60 days, `audit` 150. */
export const PASS_RETENTION = { RETENTION_DAYS: '60', RETENTION_BY_SERVICE: 'audit=150' };
export const retentionOf = (service: string) => (service === 'audit' ? 150 : 60);

const MESSAGES = [
  undefined,
  'plain',
  '',
  'quote " comma , newline\nand\r\nreturn',
  'unicode é 😀 \u2028',
  undefined,
];

/**
 * `n` events spread over ~200 days (never within 1.5 days of a retention boundary, so the
 * clock moving during a test does not change which are expired), across three services,
 * with NULLs, empty strings, quotes, newlines, unicode and nested metadata.
 */
export function agedEvents(n: number, seed: number): SentEvent[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => {
    const k = seed * 7919 + i;
    let ageDays = 1 + ((k * 37) % 1990) / 10 + (k % 10) / 1000;
    for (const edge of [60, 150]) if (Math.abs(ageDays - edge) < 1.5) ageDays += 3;
    const service = ['checkout', 'audit', 'web.app'][k % 3] as string;
    const message = MESSAGES[k % MESSAGES.length];
    const e: SentEvent = {
      id: crypto.randomUUID(),
      service,
      type: k % 2 ? 'order.placed' : 'page.viewed',
      timestamp: new Date(now - Math.round(ageDays * DAY_MS)).toISOString(),
      ageDays,
    };
    if (k % 5 !== 0) e.userId = `user-${k % 17}`;
    if (k % 3 === 1) e.anonymousId = `anon-${k % 11}`;
    if (message !== undefined) e.message = message;
    if (k % 4 !== 0) {
      e.metadata = {
        email: `u${k}@example.com`,
        ip: '192.0.2.1',
        n: k,
        nested: { list: [1, 2.5, null] },
        s: 'x"y',
      };
    }
    return e;
  });
}

export const isExpired = (e: SentEvent) => e.ageDays > retentionOf(e.service);

/** Sends the events through the batch API and waits until every one is a row. */
export async function ingestAll(stack: Stack, events: SentEvent[]): Promise<void> {
  for (let i = 0; i < events.length; i += 250) {
    const res = await call(stack.url, '/v1/events/batch', {
      body: { events: events.slice(i, i + 250).map(({ ageDays: _age, ...e }) => e) },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect(res.body.accepted).toBe(Math.min(250, events.length - i));
  }
  await waitUntilStored(
    stack.env.pool,
    events.map((e) => e.id),
    60_000,
    'every event stored',
  );
}

/** The archived row carries exactly what was sent. */
export function expectSameEvent(
  row: ArchivedRow,
  sent: SentEvent,
  userId = sent.userId ?? null,
  anonymousId = sent.anonymousId ?? null,
): void {
  expect(row.us).toBe(String(Date.parse(sent.timestamp) * 1000));
  expect(row.service).toBe(sent.service);
  expect(row.type).toBe(sent.type);
  expect(row.user_id).toBe(userId);
  expect(row.anonymous_id).toBe(anonymousId);
  expect(row.message).toBe(sent.message ?? null);
  if (sent.metadata === undefined) expect(row.metadata).toBeNull();
  else expect(JSON.parse(row.metadata as string)).toEqual(sent.metadata);
  const at = new Date(sent.timestamp);
  expect(row.year).toBe(String(at.getUTCFullYear()));
  expect(row.month).toBe(String(at.getUTCMonth() + 1).padStart(2, '0'));
  expect(row.hiveService).toBe(sent.service);
}

/** Ids and row counts, by id, of the rows now in PostgreSQL among `ids`. */
export async function idsInDatabase(stack: Stack, ids: string[]): Promise<Set<string>> {
  const { rows } = await stack.env.pool.query<{ id: string }>(
    'SELECT id FROM events WHERE id = ANY($1::uuid[])',
    [ids],
  );
  return new Set(rows.map((r) => r.id));
}
