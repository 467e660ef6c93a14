import { createHmac, randomUUID } from 'node:crypto';
import { describe, expect } from 'vitest';
import { archiveStackTest } from '../helpers/fixtures.ts';
import {
  expectAppendTablesMatch,
  expectDailyCountsMatch,
  expectEventTablesMatch,
  expectTraitsMatch,
} from '../helpers/mat-oracle.ts';
import { type SegmentCall, sendBatches } from '../helpers/mat-traffic.ts';
import { cliResult, runTributary } from '../helpers/processes.ts';
import { call, type Stack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * A rebuild that reaches past retention (ARCHITECTURE §7, §17): events of two old months are
 * anonymised, then archived to a real S3 server and deleted; a plain rebuild holds the recent
 * events only; a rebuild with `archivedFrom` reads the archived months back (only those asked
 * for, only the materialisation's service), and every table equals the oracle over the events
 * as they were before retention (anonymised as the archive holds them). A subject erased
 * afterwards does not come back from the archive.
 */
const SECRET = 'materialize-archived-secret-0123456789';
const WEB = 'arch-web';
const OTHER = 'arch-other';
const DAY_MS = 86_400_000;
const test = archiveStackTest({
  workers: 1,
  env: { MATERIALIZE_POLL_MS: '100' },
  // Erasure finds anonymised rows by their pseudonyms.
  settings: { ANONYMIZE_SECRET: SECRET },
});
const hmac = (id: string) => createHmac('sha256', SECRET).update(id).digest('hex');
const q = (s: string) => `'${s.replaceAll("'", "''")}'`;

const now = Date.now();
const monthOf = (ms: number) => new Date(ms).toISOString().slice(0, 7);
const monthStart = (label: string) => Date.parse(`${label}-01T00:00:00Z`);
/** Two months well past a 60-day retention, and their first instants. */
const M1 = monthOf(now - 150 * DAY_MS);
const M2 = monthOf(now - 100 * DAY_MS);
const prefix = `ar${randomUUID().slice(0, 6)}`;
const USERS = 6;
const userId = (u: number) => `${prefix}-u${u}`;

/**
 * Segment calls of one service: each user in M1 (with the only `Signup`s), in M2 and in the
 * last two days. User 0 has no anonymous id and no alias: its only ids are its user id and pseudonym.
 */
function traffic(service: string): SegmentCall[] {
  let n = 0;
  const [m1, m2] = [M1, M2].map((m) => monthStart(m) + 5 * DAY_MS) as [number, number];
  const recent = now - 2 * DAY_MS;
  const calls: SegmentCall[] = [];
  for (let u = 0; u < USERS; u++) {
    const who = { userId: userId(u), ...(u === 0 ? {} : { anonymousId: `${prefix}-a${u}` }) };
    const context = { ip: `192.0.2.${u}` };
    const order = (total: unknown) => ({
      type: 'track',
      event: 'Order Completed',
      properties: { total, currency: 'EUR' },
    });
    const made: [number, Record<string, unknown>][] = [
      [m1, { type: 'identify', traits: { plan: 'free', first: 'm1', age: 30 + u } }],
      [m1, { type: 'track', event: 'Signup', properties: { method: 'email' } }],
      [m1, order(u + 1)],
      [m1, { type: 'page', name: 'Home', properties: { path: '/' } }],
      [m1, { type: 'group', groupId: `${prefix}-g${u % 2}`, traits: { name: `Team ${u % 2}`, size: u } }],
      ...(u === 0
        ? []
        : [[m1, { type: 'alias', previousId: `${prefix}-old${u}` }] as [number, Record<string, unknown>]]),
      [m2, { type: 'identify', traits: { plan: 'pro', second: 'm2' } }],
      [m2, order(u + 0.5)],
      [m2, { type: 'screen', name: 'Cart', properties: { items: u } }],
      [recent, { type: 'identify', traits: { plan: 'team' } }],
      [recent, order(`${u} EUR`)],
      [
        recent,
        {
          type: 'track',
          event: 'Recent Only',
          userId: undefined,
          anonymousId: `${prefix}-x${u}`,
          properties: { u },
        },
      ],
    ];
    for (const [base, call] of made) {
      const timestamp = new Date(base + u * 3_600_000 + n * 1_000).toISOString();
      calls.push({ messageId: `${prefix}-${service}-${n++}`, ...who, context, timestamp, ...call });
    }
  }
  return calls;
}

// biome-ignore lint/suspicious/noExplicitAny: the API's body, checked field by field
type View = any;

/** Waits until the materialisation applied everything, its last rebuild newer than `after`'s. */
async function caughtUp(stack: Stack, what: string, after?: View): Promise<View> {
  let last: View;
  try {
    return await waitFor(
      async () => {
        last = (await call(stack.url, '/v1/admin/materializations/arch')).body;
        const ready =
          last.state === 'running' &&
          last.lag.pending === 0 &&
          last.lag.staleDays === 0 &&
          last.rebuildRequestedAt === null &&
          (after === undefined || last.lastRebuildAt !== after.lastRebuildAt);
        return ready ? last : undefined;
      },
      60_000,
      what,
      100,
    );
  } catch (err) {
    const { columns: _, ...state } = last ?? {};
    throw new Error(`${(err as Error).message}; state: ${JSON.stringify(state)}`);
  }
}

async function rebuild(stack: Stack, body?: unknown): Promise<View> {
  const before = (await call(stack.url, '/v1/admin/materializations/arch')).body;
  const res = await call(stack.url, '/v1/admin/materializations/arch/rebuild', {
    method: 'POST',
    ...(body === undefined ? {} : { body }),
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const archivedFrom = (body as { archivedFrom?: string } | undefined)?.archivedFrom ?? null;
  if (res.body.rebuildRequestedAt !== null) expect(res.body.rebuildArchivedFrom).toBe(archivedFrom);
  const after = await caughtUp(stack, `rebuilt from ${archivedFrom ?? 'events'}`, before);
  expect(after.lastRebuildArchivedFrom).toBe(archivedFrom);
  expect(after.rebuildArchivedFrom).toBeNull();
  return after;
}

/** Every table of `arch` equals the oracle over `source` (events of WEB as a rebuild must see them). */
async function expectTablesMatch(stack: Stack, source: string, state: View): Promise<Record<string, number>> {
  const pool = stack.env.pool;
  const counts = await expectAppendTablesMatch(pool, 'arch', source);
  await expectEventTablesMatch(pool, 'arch', state.eventTables, source);
  await expectTraitsMatch(pool, 'arch', 'users', source);
  await expectTraitsMatch(pool, 'arch', 'accounts', source);
  counts.daily_counts = await expectDailyCountsMatch(pool, 'arch', source);
  return counts;
}

const count = async (stack: Stack, sql: string, params: unknown[] = []) =>
  (await stack.env.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, params)).rows[0]?.n;

describe('a materialisation rebuilt from archived months', () => {
  const web = traffic(WEB);
  const other = traffic(OTHER);
  /** The WEB events as a full rebuild must see them: anonymised, before retention archived any. */
  const ORACLE = 'arch_oracle';
  const since = (month: string) =>
    `(SELECT * FROM ${ORACLE} WHERE occurred_at >= ${q(new Date(monthStart(month)).toISOString())})`;
  const eventsNow = `(SELECT * FROM events WHERE service = ${q(WEB)})`;
  let plain: Record<string, number>;

  test('old months are anonymised, archived and deleted; a plain rebuild holds the recent events only', async ({
    stack,
  }) => {
    expect(M1 < M2).toBe(true);
    for (const [service, calls] of [
      [WEB, web],
      [OTHER, other],
    ] as const) {
      const key = await call(stack.url, '/v1/admin/keys', {
        body: { name: service, scopes: ['ingest'], services: [service], rateLimitPerMinute: 1_000_000 },
      });
      expect(key.status).toBe(201);
      await sendBatches(stack, key.body.key, calls);
    }
    await waitFor(
      async () => (await count(stack, 'events')) === web.length + other.length,
      30_000,
      'every event stored',
    );
    const put = await call(stack.url, '/v1/admin/materializations/arch', {
      method: 'PUT',
      body: { destination: { kind: 'postgres', schema: 'arch' }, services: [WEB] },
    });
    expect(put.status).toBe(201);
    expect(put.body).toMatchObject({ rebuildArchivedFrom: null, lastRebuildArchivedFrom: null });
    const built = await caughtUp(stack, 'first build');

    // Pass 1 archives nothing (400 days) but anonymises the old months; pass 2 archives them (60 days).
    const anonymise = await runTributary(
      ['retention'],
      stack.env.env({ RETENTION_DAYS: '400', ANONYMIZE_AFTER_DAYS: '30', PII_METADATA_KEYS: 'context' }),
    );
    expect(anonymise.code, anonymise.stderr).toBe(0);
    expect(cliResult(anonymise.stdout)).toMatchObject({ status: 'completed', rowsArchived: 0 });
    const pool = stack.env.pool;
    await pool.query(`CREATE TABLE ${ORACLE} AS SELECT * FROM events WHERE service = $1`, [WEB]);
    const old = await count(stack, `${ORACLE} WHERE occurred_at < now() - interval '60 days'`);
    expect(old).toBe(web.filter((c) => Date.parse(String(c.timestamp)) < now - 60 * DAY_MS).length);
    expect(await count(stack, `${ORACLE} WHERE anonymized`)).toBe(old);
    await caughtUp(stack, 'rebuilt after the anonymisation', built);

    const archive = await runTributary(['retention'], stack.env.env({ RETENTION_DAYS: '60' }));
    expect(archive.code, archive.stderr).toBe(0);
    expect(cliResult(archive.stdout)).toMatchObject({ status: 'completed' });
    const archives = await pool.query<{ month: string; service: string; status: string }>(
      `SELECT month, service, status FROM archives ORDER BY 1, 2`,
    );
    expect(archives.rows).toEqual(
      [M1, M2].flatMap((month) => [OTHER, WEB].map((service) => ({ month, service, status: 'complete' }))),
    );
    expect(await count(stack, `events WHERE occurred_at < now() - interval '60 days'`)).toBe(0);

    const state = await rebuild(stack);
    plain = await expectTablesMatch(stack, eventsNow, state);
    expect(plain.tracks).toBe(USERS * 2);
    expect(await count(stack, `arch.tracks WHERE occurred_at < now() - interval '60 days'`)).toBe(0);
    expect(state.eventTables.Signup).toBeUndefined();
  }, 180_000);

  test('refuses a malformed archivedFrom with the field at fault', async ({ stack }) => {
    for (const body of [
      { archivedFrom: '2026-13' },
      { archivedFrom: '2026-1' },
      { archivedFrom: '2026-01-01' },
      { archivedFrom: 202601 },
      { archivedFrom: M1, extra: true },
    ]) {
      const res = await call(stack.url, '/v1/admin/materializations/arch/rebuild', { method: 'POST', body });
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
      expect(res.body.error.code).toBe('invalid_request');
      if (!('extra' in body)) expect(res.body.error.details?.[0]?.path).toBe('archivedFrom');
    }
    const notJson = await call(stack.url, '/v1/admin/materializations/arch/rebuild', {
      method: 'POST',
      raw: '{"archivedFrom":',
    });
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.code).toBe('invalid_json');
    const text = await call(stack.url, '/v1/admin/materializations/arch/rebuild', {
      method: 'POST',
      raw: 'archivedFrom=2026-01',
      contentType: 'text/plain',
    });
    expect(text.status).toBe(415);
    const unknown = await call(stack.url, '/v1/admin/materializations/nope/rebuild', {
      method: 'POST',
      body: { archivedFrom: M1 },
    });
    expect(unknown.status).toBe(404);
    const state = (await call(stack.url, '/v1/admin/materializations/arch')).body;
    expect(state).toMatchObject({ rebuildRequestedAt: null, rebuildArchivedFrom: null });
  });

  test('archivedFrom reads back the archived months from it on, of its services only: equal to the oracle', async ({
    stack,
  }) => {
    const fromM2 = await rebuild(stack, { archivedFrom: M2 });
    const counts = await expectTablesMatch(stack, since(M2), fromM2);
    expect(counts.tracks).toBe(USERS * 3);
    expect(fromM2.eventTables.Signup).toBeUndefined();

    const all = await rebuild(stack, { archivedFrom: M1 });
    const full = await expectTablesMatch(stack, ORACLE, all);
    expect(full.tracks).toBe(USERS * 5);
    expect(full.daily_counts).toBeGreaterThan(plain.daily_counts ?? 0);
    // A table of an event seen in an archived month only.
    expect(all.eventTables.Signup).toBeDefined();
    expect(await count(stack, `arch.${all.eventTables.Signup}`)).toBe(USERS);
    expect(await count(stack, `arch.tracks WHERE service <> $1`, [WEB])).toBe(0);
    // Anonymised as archived: pseudonyms, no context; the recent rows as sent.
    const raw = Array.from({ length: USERS }, (_, u) => userId(u));
    const archived = `arch.tracks WHERE occurred_at < now() - interval '60 days'`;
    expect(await count(stack, `${archived} AND user_id = ANY($1)`, [raw])).toBe(0);
    expect(await count(stack, `${archived} AND user_id = ANY($1)`, [raw.map(hmac)])).toBe(USERS * 3);
    expect(await count(stack, `${archived} AND context IS NOT NULL`)).toBe(0);
    expect(
      await count(stack, `arch.users WHERE user_id = ANY($1) AND traits->>'first' = 'm1'`, [raw.map(hmac)]),
    ).toBe(USERS);
    // A rebuild nobody asked for (a new configuration) keeps the archived months.
    const put = await call(stack.url, '/v1/admin/materializations/arch', {
      method: 'PUT',
      body: { destination: { kind: 'postgres', schema: 'arch' }, services: [WEB], promoteMaxColumns: 150 },
    });
    expect(put.status).toBe(200);
    if (put.body.rebuildRequestedAt !== null) expect(put.body.rebuildArchivedFrom).toBe(M1);
    const respec = await caughtUp(stack, 'rebuilt for the new configuration', all);
    expect(respec.lastRebuildArchivedFrom).toBe(M1);
    await expectTablesMatch(stack, ORACLE, respec);
    console.log(
      `[materialize-archived] events only: ${JSON.stringify(plain)}; from ${M2}: ${JSON.stringify(counts)}; from ${M1}: ${JSON.stringify(full)}`,
    );
  }, 120_000);

  test('a subject erased since does not come back from the archive', async ({ stack }) => {
    // User 0 has no anonymous id and no alias: its ids are its user id and its pseudonym.
    const ids = [userId(0), hmac(userId(0))];
    const pool = stack.env.pool;
    expect(await count(stack, `arch.tracks WHERE user_id = ANY($1)`, [ids])).toBe(4);
    const erase = await call(stack.url, `/v1/users/${userId(0)}/events`, { method: 'DELETE' });
    expect(erase.status).toBe(202);
    const done = await waitFor(
      async () => {
        const s = await call(stack.url, `/v1/dsar/${erase.body.requestId}`);
        return s.body.status === 'completed' ? s.body : undefined;
      },
      60_000,
      'erasure completed',
    );
    expect(done.deleted.archive).toBeGreaterThan(0);
    const state = await rebuild(stack, { archivedFrom: M1 });
    for (const table of ['tracks', 'identifies', 'pages', 'screens', 'groups', 'users']) {
      expect({ table, n: await count(stack, `arch.${table} WHERE user_id = ANY($1)`, [ids]) }).toEqual({
        table,
        n: 0,
      });
    }
    await pool.query(`DELETE FROM ${ORACLE} WHERE user_id = ANY($1)`, [ids]);
    await expectTablesMatch(stack, ORACLE, state);
  }, 120_000);
});
