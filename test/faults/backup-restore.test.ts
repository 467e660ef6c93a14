import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, describe, expect } from 'vitest';
import type { PrivateDatabaseEnv } from '../helpers/env.ts';
import { privateDatabaseTest } from '../helpers/fixtures.ts';
import { freePort, type PrivatePostgres, RestoredPostgres } from '../helpers/private-servers.ts';
import { call, event } from '../helpers/stack.ts';
import { sleep, waitFor } from '../helpers/wait.ts';

// The shipped configuration (ops/pgbackrest), with this test's paths: a real pgBackRest backup
// of a private cluster Tributary writes into, then a point-in-time restore of it on another
// port, which must hold exactly the events committed before the target time.
const SHIPPED = fileURLToPath(new URL('../../ops/pgbackrest/', import.meta.url));
const EVENTS = 500;

// pgBackRest's configuration, repository, logs and locks. Made now: archive_command, in the
// primary's postgresql.conf from its initdb on, names this configuration.
const work = mkdtempSync(join(tmpdir(), 'tributary-pgbackrest-'));
const conf = join(work, 'pgbackrest.conf');
for (const dir of ['repo', 'log', 'lock']) mkdirSync(join(work, dir));
execFileSync('chown', ['-R', 'postgres:postgres', work]);

/** ops/pgbackrest/postgresql.conf's settings, archive_command pointed at this test's configuration. */
function archiveSettings(): Record<string, string> {
  const settings: Record<string, string> = {};
  for (const line of readFileSync(join(SHIPPED, 'postgresql.conf'), 'utf8').split('\n')) {
    const setting = /^(\w+)\s*=\s*'?(.*?)'?\s*$/.exec(line);
    if (setting?.[1] && setting[1] !== 'include_if_exists') settings[setting[1]] = setting[2] ?? '';
  }
  if (settings.wal_level !== 'replica' || settings.archive_mode !== 'on' || !settings.archive_timeout) {
    throw new Error(`ops/pgbackrest/postgresql.conf: no continuous archiving in ${JSON.stringify(settings)}`);
  }
  settings.archive_command = String(settings.archive_command).replace(
    /^pgbackrest /,
    `pgbackrest --config=${conf} `,
  );
  return settings;
}

/** ops/pgbackrest/pgbackrest.conf with this test's repository, logs, locks and primary. */
function writeConf(primary: PrivatePostgres): void {
  const own: Record<string, string> = {
    'repo1-path': join(work, 'repo'),
    'pg1-path': primary.dataDir,
    'pg1-socket-path': primary.dir,
    'pg1-port': String(primary.port),
  };
  const text = readFileSync(join(SHIPPED, 'pgbackrest.conf'), 'utf8')
    .replace(/^([\w-]+)=.*$/gm, (line, key: string) => (own[key] ? `${key}=${own[key]}` : line))
    .replace('[global]', `[global]\nlog-path=${join(work, 'log')}\nlock-path=${join(work, 'lock')}`);
  // Every path the shipped file names must have been replaced: none of them is ours to write.
  if (/=\/var\//.test(text)) throw new Error(`a path of the shipped file is left in:\n${text}`);
  writeFileSync(conf, text);
  execFileSync('chown', ['postgres:postgres', conf]);
}

const run = promisify(execFile);

/** One pgBackRest command on the stanza, as postgres; its standard output. */
async function pgbackrest(...args: string[]): Promise<string> {
  const { stdout } = await run('runuser', [
    '-u',
    'postgres',
    '--',
    'pgbackrest',
    `--config=${conf}`,
    '--stanza=tributary',
    ...args,
  ]);
  return stdout;
}

const settings = archiveSettings();
const test = privateDatabaseTest({ BATCH_MAX_WAIT_MS: '50' }, { settings });

let restored: RestoredPostgres | undefined;
let onRestored: pg.Pool | undefined;
afterAll(async () => {
  await onRestored?.end().catch(() => {});
  restored?.destroy();
  rmSync(work, { recursive: true, force: true });
});

/** Sends `n` events in one batch and waits until every one is stored; their ids. */
async function sendAndStore(
  t: PrivateDatabaseEnv,
  url: string,
  userId: string,
  n: number,
): Promise<string[]> {
  const events = Array.from({ length: n }, () => event({ userId }));
  const res = await call(url, '/v1/events/batch', { body: { events } });
  expect(res.body.accepted).toBe(n);
  const ids = events.map((e) => String(e.id));
  await waitFor(
    async () => {
      const { rows } = await t.pool.query(
        'SELECT count(*)::int AS n FROM events WHERE id = ANY($1::uuid[])',
        [ids],
      );
      return rows[0].n === n ? true : null;
    },
    20_000,
    `${n} events of ${userId} stored`,
  );
  return ids;
}

/** The ids of `ids` a database holds, and how many events it holds in all. */
async function held(pool: pg.Pool, ids: string[]): Promise<{ found: Set<string>; total: number }> {
  const found = await pool.query('SELECT id::text FROM events WHERE id = ANY($1::uuid[])', [ids]);
  const total = await pool.query('SELECT count(*)::int AS n FROM events');
  return { found: new Set(found.rows.map((r) => r.id)), total: total.rows[0].n };
}

const seconds = (since: number) => ((performance.now() - since) / 1000).toFixed(2);

describe('backups and point-in-time recovery with pgBackRest', () => {
  test(`a restore to a moment between two batches of ${EVENTS} holds the first batch and none of the second`, async ({
    testEnv: t,
  }) => {
    const primary = t.postgres;
    writeConf(primary);
    await pgbackrest('stanza-create');
    const backupStarted = performance.now();
    await pgbackrest('backup', '--type=full');
    const backupS = seconds(backupStarted);

    const api = await t.start('serve');
    await t.start('work');
    const a = await sendAndStore(t, api.url, 'before-target', EVENTS);
    const { rows: at } = await t.pool.query('SELECT now()::text AS target');
    const target = String(at[0].target);
    // A duration, not a wait: the target stands clear of B's commits whatever the clock's grain.
    await sleep(1_500);
    const b = await sendAndStore(t, api.url, 'after-target', EVENTS);
    const committed = performance.now();

    // B's WAL is in the current segment: switched, then archived by archive_command.
    const { rows: current } = await t.pool.query(
      'SELECT pg_walfile_name(pg_current_wal_insert_lsn()) AS segment',
    );
    const segment = String(current[0].segment);
    const switched = performance.now();
    await t.pool.query('SELECT pg_switch_wal()');
    await waitFor(
      async () => {
        const { rows } = await t.pool.query('SELECT last_archived_wal FROM pg_stat_archiver');
        return (rows[0].last_archived_wal ?? '') >= segment ? true : null;
      },
      20_000,
      `WAL segment ${segment} archived`,
      20,
    );
    const archiveLagS = seconds(committed);
    const afterSwitchS = seconds(switched);

    // The restore: into a new data directory, replaying the archive up to the target, then
    // promoted. Archiving off, so that it pushes nothing into the primary's repository.
    restored = new RestoredPostgres(await freePort());
    const restoreStarted = performance.now();
    await pgbackrest(
      'restore',
      `--pg1-path=${restored.dataDir}`,
      '--type=time',
      `--target=${target}`,
      '--target-action=promote',
      '--archive-mode=off',
    );
    restored.start();
    const url = new URL(t.databaseUrl);
    url.port = String(restored.port);
    const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
    pool.on('error', () => {});
    onRestored = pool;
    await waitFor(
      async () => {
        const { rows } = await pool
          .query('SELECT pg_is_in_recovery() AS recovering')
          .catch(() => ({ rows: [] }));
        return rows[0]?.recovering === false ? true : null;
      },
      30_000,
      'the restored cluster out of recovery',
      20,
    );
    const restoreS = seconds(restoreStarted);

    const onScratch = await held(pool, [...a, ...b]);
    expect(onScratch.total).toBe(EVENTS);
    expect(a.filter((id) => !onScratch.found.has(id))).toEqual([]);
    expect(b.filter((id) => onScratch.found.has(id))).toEqual([]);
    const onPrimary = await held(t.pool, [...a, ...b]);
    expect(onPrimary.total).toBe(2 * EVENTS);
    expect(onPrimary.found.size).toBe(2 * EVENTS);

    const info = JSON.parse(await pgbackrest('info', '--output=json'));
    const full = info[0].backup[0].info;
    const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
    console.info(
      `[backup-restore] full backup ${backupS} s (database ${mb(full.size)} MB, ${mb(full.repository.size)} MB ` +
        `in the repository); restore + start + recovery to the target ${restoreS} s (the RTO on this data); ` +
        `WAL archive lag ${archiveLagS} s from B's commit to its segment archived (${afterSwitchS} s after ` +
        `pg_switch_wal); RPO bounded by archive_timeout (${settings.archive_timeout} s) on a lost host`,
    );
  });
});
