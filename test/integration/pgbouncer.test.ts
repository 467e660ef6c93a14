import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agedEvents, isExpired, PASS_RETENTION, type SentEvent } from '../helpers/aged-events.ts';
import { readArchive } from '../helpers/archive-reader.ts';
import { BASE_DATABASE_URL, createTestEnv, type TestEnv } from '../helpers/env.ts';
import { expectAppendTablesMatch, expectDailyCountsMatch } from '../helpers/mat-oracle.ts';
import { PrivatePgBouncer } from '../helpers/pgbouncer.ts';
import { cliResult, runTributary, startTributary, type TributaryProcess } from '../helpers/processes.ts';
import { call, event, unstorableEntry, waitFor } from '../helpers/stack.ts';
import { expectBufferDrained, expectStoredExactlyOnce } from '../helpers/stored-once.ts';

/**
 * Every role but `migrate` through PgBouncer in transaction pooling mode, with a few server
 * connections shared by all of them: a statement that leaned on session state (a session SET,
 * a session advisory lock, a named prepared statement, a temporary table outliving its
 * transaction) or a startup parameter PgBouncer refuses would fail or go wrong here.
 */
describe('every role through PgBouncer (transaction pooling); migrate on the direct connection', () => {
  let bouncer: PrivatePgBouncer;
  let env: TestEnv;
  let dir: string;
  let api: TributaryProcess;
  let worker: TributaryProcess;
  let transactionsAfterMigrate: number;
  const archive = () => ({
    ARCHIVE_DIR: join(dir, 'archive'),
    ARCHIVE_S3_REGION: 'us-east-1',
    ARCHIVE_S3_FORCE_PATH_STYLE: true,
    ARCHIVE_S3_CHECKSUMS: 'when_supported' as const,
  });
  /** DATABASE_URL through PgBouncer, DATABASE_MIGRATION_URL direct. */
  const through = (extra: Record<string, string> = {}) =>
    env.env({
      DATABASE_URL: bouncer.url(env.name),
      DATABASE_MIGRATION_URL: env.databaseUrl,
      ARCHIVE_DIR: join(dir, 'archive'),
      ARCHIVE_WORK_DIR: join(dir, 'work'),
      // Ingest accepts a year back; the retention pass below runs with 60 days (audit: 150).
      RETENTION_DAYS: '400',
      RETENTION_SCHEDULE: 'off',
      DATABASE_POOL_SIZE: '8',
      ...extra,
    });
  const rowsOf = async (ids: string[]) =>
    (
      await env.pool.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM events WHERE id = ANY($1::uuid[])',
        [ids],
      )
    ).rows[0]?.n;

  beforeAll(async () => {
    bouncer = await PrivatePgBouncer.start(BASE_DATABASE_URL);
    env = createTestEnv();
    dir = mkdtempSync(join(tmpdir(), 'tributary-pgbouncer-test-'));
    const migrated = await runTributary(['migrate'], through());
    expect(migrated.code, migrated.stderr).toBe(0);
    transactionsAfterMigrate = (await bouncer.stats(env.name)).transactions;
    api = await startTributary('serve', through());
    worker = await startTributary('work', through());
  }, 60_000);

  afterAll(async () => {
    await Promise.all([api, worker].map((p) => p?.kill9()));
    await bouncer?.stop();
    await env?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('migrate used the direct connection, not PgBouncer', () => {
    expect(transactionsAfterMigrate).toBe(0);
  });

  it('single and batch ingest store every accepted event exactly once; queries page through them', async () => {
    const accepted = new Set<string>();
    const singles = Array.from({ length: 40 }, (_, i) => event({ service: 'pgb', userId: `s-${i % 7}` }));
    for (const e of singles) {
      const res = await call(api.url, '/v1/events', { body: e });
      expect(res.status).toBe(202);
      accepted.add(res.body.id);
    }
    // A client retry of one it already sent is a duplicate, not a second row.
    const retry = await call(api.url, '/v1/events', { body: singles[0] });
    expect(retry.body.status).toBe('duplicate');
    const batches = await Promise.all(
      Array.from({ length: 6 }, (_, b) =>
        call(api.url, '/v1/events/batch', {
          body: { events: Array.from({ length: 250 }, (_, i) => event({ userId: `b-${b}-${i % 11}` })) },
        }),
      ),
    );
    for (const res of batches) {
      expect(res.status).toBe(202);
      expect(res.body.accepted).toBe(250);
      for (const id of res.body.ids as string[]) accepted.add(id);
    }
    expect(accepted.size).toBe(40 + 6 * 250);
    await expectStoredExactlyOnce(env.pool, accepted, 60_000);
    await expectBufferDrained(env.redis, env.prefix);

    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await call(
        api.url,
        `/v1/events?service=pgb&limit=15${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      expect(page.status).toBe(200);
      for (const e of page.body.events as { id: string }[]) seen.push(e.id);
      cursor = page.body.nextCursor ?? undefined;
    } while (cursor);
    expect(seen.length).toBe(singles.length);
    expect(new Set(seen)).toEqual(new Set(singles.map((e) => e.id)));
  });

  it('dead-letters an entry PostgreSQL refuses and stores the events around it', async () => {
    const good = [event(), event()];
    await call(api.url, '/v1/events/batch', { body: { events: [good[0]] } });
    const poison = unstorableEntry();
    await env.redis.xadd(`${env.prefix}:events:{0}`, '*', 'v', '1', 'e', poison, 'tp', '');
    await call(api.url, '/v1/events/batch', { body: { events: [good[1]] } });
    await waitFor(async () => (await rowsOf(good.map((e) => String(e.id)))) === 2, 20_000, 'good rows');
    const health = await waitFor(async () => {
      const b = await call(api.url, '/health/buffer');
      return b.body.deadLetters === 1 && b.body.pending === 0 ? b.body : null;
    });
    expect(health.length).toBe(0);
    const [[, fields] = ['', []]] = await env.redis.xrange(`${env.prefix}:dead`, '-', '+');
    expect(fields[fields.indexOf('error') + 1]).toMatch(/22007|invalid input syntax/);
  });

  it('a retention pass archives and deletes each expired row once; restore brings them back', async () => {
    const sent: SentEvent[] = agedEvents(300, 11);
    for (let i = 0; i < sent.length; i += 100) {
      const res = await call(api.url, '/v1/events/batch', {
        body: { events: sent.slice(i, i + 100).map(({ ageDays: _age, ...e }) => e) },
      });
      expect(res.body.accepted).toBe(100);
    }
    const ids = sent.map((e) => e.id);
    await waitFor(async () => (await rowsOf(ids)) === ids.length, 30_000, 'aged events stored');
    const expired = sent.filter(isExpired);
    expect(expired.length).toBeGreaterThan(100);

    const pass = await runTributary(['retention'], through(PASS_RETENTION));
    expect(pass.code, pass.stderr).toBe(0);
    expect(cliResult(pass.stdout)).toMatchObject({ status: 'completed', rowsArchived: expired.length });
    expect(await rowsOf(expired.map((e) => e.id))).toBe(0);
    expect(await rowsOf(ids)).toBe(sent.length - expired.length);
    const archived = await readArchive(archive());
    const times = new Map<string, number>();
    for (const r of archived.rows) times.set(r.id, (times.get(r.id) ?? 0) + 1);
    expect(archived.rows.length).toBe(expired.length);
    expect(expired.every((e) => times.get(e.id) === 1)).toBe(true);

    // Restore: a temporary table (ON COMMIT DROP) and COPY, in one transaction, through PgBouncer.
    const months = expired.map((e) => e.timestamp.slice(0, 7)).sort();
    const restore = await runTributary(
      ['restore', '--from', months[0] as string, '--to', months.at(-1) as string],
      through(PASS_RETENTION),
    );
    expect(restore.code, restore.stderr).toBe(0);
    expect(cliResult(restore.stdout)).toMatchObject({ status: 'ok', inserted: expired.length });
    expect(await rowsOf(ids)).toBe(sent.length);
  });

  it('erasure completes and deletes exactly the subject’s rows', async () => {
    const subject = 'pgb-erase-me';
    const mine = Array.from({ length: 30 }, () => event({ userId: subject }));
    const others = Array.from({ length: 10 }, () => event({ userId: 'pgb-keep-me' }));
    const res = await call(api.url, '/v1/events/batch', { body: { events: [...mine, ...others] } });
    expect(res.body.accepted).toBe(40);
    await waitFor(async () => (await rowsOf(res.body.ids)) === 40, 20_000, 'subject stored');

    const erase = await call(api.url, `/v1/users/${subject}/events`, { method: 'DELETE' });
    expect(erase.status).toBe(202);
    const done = await waitFor(
      async () => {
        const s = await call(api.url, `/v1/dsar/${erase.body.requestId}`);
        return s.body.status === 'completed' || s.body.status === 'failed' ? s.body : undefined;
      },
      45_000,
      'erasure finished',
    );
    expect(done).toMatchObject({ status: 'completed', deleted: { database: 30, buffer: 0, archive: 0 } });
    expect(await rowsOf(mine.map((e) => String(e.id)))).toBe(0);
    expect(await rowsOf(others.map((e) => String(e.id)))).toBe(10);
  });

  it('a materialisation builds, follows new events and rebuilds through PgBouncer, equal to its oracle', async () => {
    const put = await call(api.url, '/v1/admin/materializations/pgb', {
      method: 'PUT',
      body: { destination: { kind: 'postgres', schema: 'pgb' } },
    });
    expect(put.status).toBe(201);
    const settled = async (what: string) => {
      const stored = async () => Number((await env.pool.query('SELECT count(*) AS n FROM events')).rows[0].n);
      return waitFor(
        async () => {
          const before = await stored();
          const m = (await call(api.url, '/v1/admin/materializations/pgb')).body;
          const done =
            m.state === 'running' &&
            m.lag.pending === 0 &&
            m.lag.staleDays === 0 &&
            m.rebuildRequestedAt === null;
          return done && before === (await stored()) ? m : undefined;
        },
        45_000,
        what,
        100,
      );
    };
    await settled('built');
    const more = Array.from({ length: 120 }, (_, i) =>
      event({ userId: `pgb-m-${i % 7}`, type: `pgb.${i % 3}` }),
    );
    const res = await call(api.url, '/v1/events/batch', { body: { events: more } });
    expect(res.body.accepted).toBe(120);
    await waitFor(async () => (await rowsOf(res.body.ids)) === 120, 20_000, 'stored');
    await settled('followed');
    await expectAppendTablesMatch(env.pool, 'pgb');
    await expectDailyCountsMatch(env.pool, 'pgb');
    expect((await call(api.url, '/v1/admin/materializations/pgb/rebuild', { method: 'POST' })).status).toBe(
      202,
    );
    await settled('rebuilt');
    await expectAppendTablesMatch(env.pool, 'pgb');
    await expectDailyCountsMatch(env.pool, 'pgb');
  });

  it('every role really went through PgBouncer, and logged no error', async () => {
    expect((await bouncer.stats(env.name)).transactions).toBeGreaterThan(100);
    for (const p of [api, worker]) {
      expect(p.child.exitCode).toBeNull();
      expect(p.logs.filter((l) => Number(l.level) >= 50)).toEqual([]);
    }
  });
});

describe('`all` through PgBouncer', () => {
  it('migrates on DATABASE_MIGRATION_URL, then serves and stores through DATABASE_URL', async () => {
    const bouncer = await PrivatePgBouncer.start(BASE_DATABASE_URL);
    const env = createTestEnv();
    let all: TributaryProcess | undefined;
    try {
      all = await startTributary(
        'all',
        env.env({
          DATABASE_URL: bouncer.url(env.name),
          DATABASE_MIGRATION_URL: env.databaseUrl,
          RETENTION_SCHEDULE: 'off',
        }),
      );
      expect(await all.waitForLog((l) => l.msg === 'database ready')).toMatchObject({
        databaseCreated: true,
      });
      const sent = event();
      expect((await call(all.url, '/v1/events', { body: sent })).status).toBe(202);
      await expectStoredExactlyOnce(env.pool, new Set([String(sent.id)]), 20_000);
      expect((await bouncer.stats(env.name)).transactions).toBeGreaterThan(0);
    } finally {
      await all?.kill9();
      await bouncer.stop();
      await env.cleanup();
    }
  });
});
