import { randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { migrateDatabase } from '../../src/store/migrate.ts';
import { createTestEnv } from '../helpers/env.ts';
import { runTributary } from '../helpers/processes.ts';

const env = createTestEnv();
const MIGRATIONS = fileURLToPath(new URL('../../drizzle', import.meta.url));
afterAll(async () => {
  await env.cleanup();
});

const monthName = (d: Date) => `events_${d.getUTCFullYear()}_${String(d.getUTCMonth() + 1).padStart(2, '0')}`;

describe('tributary migrate', () => {
  it('creates the database, tables and monthly partitions, and is idempotent', async () => {
    const first = await runTributary(['migrate'], env.env({ RETENTION_DAYS: '90' }));
    expect(first.code, first.stderr).toBe(0);
    const out = JSON.parse(first.stdout);
    expect(out.databaseCreated).toBe(true);
    const now = new Date();
    const ahead = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 2, 1));
    const back = new Date(now.getTime() - 90 * 86_400_000);
    expect(out.partitionsCreated).toEqual(
      expect.arrayContaining([monthName(now), monthName(ahead), monthName(back)]),
    );

    const second = await runTributary(['migrate'], env.env({ RETENTION_DAYS: '90' }));
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toEqual({
      status: 'ok',
      databaseCreated: false,
      partitionsCreated: [],
    });

    const parts = await env.pool.query<{ name: string; bound: string }>(
      `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass`,
    );
    const names = parts.rows.map((r) => r.name);
    expect(names).toContain('events_default');
    expect(parts.rows.find((r) => r.name === 'events_default')?.bound).toBe('DEFAULT');
    expect(parts.rows.find((r) => r.name === monthName(now))?.bound).toMatch(/FOR VALUES FROM/);
    const tables = await env.pool.query(`SELECT tablename FROM pg_tables WHERE tablename IN ('api_keys')`);
    expect(tables.rowCount).toBe(1);
  });

  it('moves rows that landed in events_default into a partition created later', async () => {
    // A row far ahead of the window goes to events_default (which should stay empty).
    const future = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth() + 5, 15));
    await env.pool.query(
      `INSERT INTO events (id, occurred_at, received_at, service, type) VALUES (gen_random_uuid(), $1, now(), 's', 't')`,
      [future],
    );
    const inDefault = await env.pool.query('SELECT count(*)::int AS n FROM events_default');
    expect(inDefault.rows[0].n).toBe(1);
    // With a longer look-ahead (retention pushes no further ahead, so create it directly through the maintenance path).
    const { ensurePartitions, monthsBetween } = await import('../../src/store/partitions.ts');
    const created = await ensurePartitions(env.pool, monthsBetween(future, future));
    expect(created).toEqual([monthName(future)]);
    expect((await env.pool.query('SELECT count(*)::int AS n FROM events_default')).rows[0].n).toBe(0);
    expect((await env.pool.query(`SELECT count(*)::int AS n FROM ${monthName(future)}`)).rows[0].n).toBe(1);
  });

  it('compresses metadata with lz4 in every partition, those made by migrate, later, or by moving rows', async () => {
    const settings = await env.pool.query<{ name: string; compression: string }>(
      `SELECT c.relname AS name, a.attcompression AS compression
         FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'metadata'
        WHERE c.oid = 'events'::regclass
           OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'events'::regclass)`,
    );
    expect(settings.rows.length).toBeGreaterThan(3);
    for (const row of settings.rows) expect(row, row.name).toEqual({ name: row.name, compression: 'l' });
    // A value large enough to be compressed is stored with lz4.
    const big = {
      note: 'x'.repeat(8_000),
      items: Array.from({ length: 200 }, (_, i) => ({ sku: `sku-${i}` })),
    };
    const id = randomUUID();
    await env.pool.query(
      `INSERT INTO events (id, occurred_at, received_at, service, type, metadata) VALUES ($1, now(), now(), 's', 't', $2)`,
      [id, big],
    );
    const stored = await env.pool.query(
      'SELECT pg_column_compression(metadata) AS c FROM events WHERE id = $1',
      [id],
    );
    expect(stored.rows[0].c).toBe('lz4');
  });

  it('binds keys to services without losing a row: a database at the schema before keeps every row and id', async () => {
    // The migrations as they were before keys had services (0000–0003).
    const old = mkdtempSync(join(tmpdir(), 'tributary-migrations-'));
    const older = createTestEnv();
    try {
      cpSync(MIGRATIONS, old, { recursive: true });
      const journalPath = join(old, 'meta', '_journal.json');
      const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: { tag: string }[] };
      const at = journal.entries.findIndex((e) => e.tag === '0004_key_services');
      expect(at).toBeGreaterThan(0);
      for (const e of journal.entries.slice(at)) rmSync(join(old, `${e.tag}.sql`));
      journal.entries = journal.entries.slice(0, at);
      writeFileSync(journalPath, JSON.stringify(journal));
      await migrateDatabase(older.databaseUrl, 30, old);

      const now = Date.now();
      const rows = Array.from({ length: 50 }, (_, i) => ({
        id: randomUUID(),
        at: new Date(now - i * 3_600_000).toISOString(),
        service: i % 2 ? 'shop' : 'billing',
      }));
      for (const r of rows) {
        await older.pool.query(
          `INSERT INTO events (id, occurred_at, received_at, service, type, user_id) VALUES ($1, $2, now(), $3, 't', 'u')`,
          [r.id, r.at, r.service],
        );
      }
      await older.pool.query(
        `INSERT INTO api_keys (name, key_hash, key_prefix, scopes) VALUES ('old', 'h', 'trb_old', '{ingest}')`,
      );
      // A month a retention pass detached and has not archived yet: archived later with the
      // events table's columns, so it needs key_id as well.
      const month = monthName(new Date(Date.now() - 20 * 86_400_000));
      await older.pool.query(`ALTER TABLE events DETACH PARTITION ${month}`);
      const detached = await older.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${month}`);

      const migrated = await runTributary(['migrate'], older.env());
      expect(migrated.code, migrated.stderr).toBe(0);
      const after = await older.pool.query<{ id: string; service: string; key_id: string | null }>(
        'SELECT id, service, key_id FROM events ORDER BY id',
      );
      const [attached, detachedAfter] = await Promise.all([
        older.pool.query<{ id: string; service: string }>('SELECT id, service FROM events'),
        older.pool.query<{ id: string; service: string; key_id: null }>(
          `SELECT id, service, key_id FROM ${month}`,
        ),
      ]);
      expect(detachedAfter.rows).toHaveLength(detached.rows[0]?.n ?? -1);
      expect([...attached.rows, ...detachedAfter.rows].map((r) => `${r.id} ${r.service}`).sort()).toEqual(
        rows.map((r) => `${r.id} ${r.service}`).sort(),
      );
      expect(after.rows.every((r) => r.key_id === null)).toBe(true);
      const key = await older.pool.query('SELECT services FROM api_keys');
      expect(key.rows).toEqual([{ services: [] }]);
      // The primary key is scoped to the service, on every attached partition (a detached one
      // is only archived and dropped).
      const pks = await older.pool.query<{ rel: string; def: string }>(
        `SELECT conrelid::regclass::text AS rel, pg_get_constraintdef(oid) AS def FROM pg_constraint
          WHERE contype = 'p' AND (conrelid = 'events'::regclass
                OR conrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'events'::regclass))`,
      );
      expect(pks.rows.length).toBeGreaterThan(2);
      for (const pk of pks.rows) expect(pk.def, pk.rel).toBe('PRIMARY KEY (occurred_at, id, service)');
      // The same id and time under another service is another event.
      const first = rows[0] as { id: string; at: string };
      await older.pool.query(
        `INSERT INTO events (id, occurred_at, received_at, service, type) VALUES ($1, $2, now(), 'other', 't')`,
        [first.id, first.at],
      );
      const same = await older.pool.query('SELECT count(*)::int AS n FROM events WHERE id = $1', [first.id]);
      expect(same.rows[0].n).toBe(2);
    } finally {
      rmSync(old, { recursive: true, force: true });
      await older.cleanup();
    }
  });

  it('refuses a bad configuration, naming the variable', async () => {
    const res = await runTributary(
      ['migrate'],
      env.env({ STREAM_PARTITIONS: 'many', RETENTION_BY_SERVICE: 'audit' }),
    );
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('STREAM_PARTITIONS');
    expect(res.stderr).toContain('RETENTION_BY_SERVICE');
  });
});
