import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A free TCP port on loopback. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export interface PrivateRedisOptions {
  /**
   * AOF on (the default) or no persistence at all (`--appendonly no`, no RDB either): a
   * restart then comes back empty, as a Redis run as a pure cache would.
   */
  appendonly?: boolean;
  /** AOF fsync policy; `everysec` is Redis's default and what docker-compose.yml uses. */
  appendfsync?: 'always' | 'everysec' | 'no';
  /** More `redis-server` arguments, e.g. cluster mode. */
  args?: string[];
}

/** A throwaway redis-server in a temp directory, for tests that stop, kill and restart it. */
export class PrivateRedis {
  readonly dir = mkdtempSync(join(tmpdir(), 'tributary-redis-'));
  readonly port: number;
  readonly #opts: Required<PrivateRedisOptions>;

  constructor(port: number, opts: PrivateRedisOptions = {}) {
    this.port = port;
    this.#opts = {
      appendonly: opts.appendonly ?? true,
      appendfsync: opts.appendfsync ?? 'everysec',
      args: opts.args ?? [],
    };
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get #pidfile(): string {
    return join(this.dir, 'redis.pid');
  }

  /** Starts the server, or starts it again on the same port and directory (the AOF is replayed). */
  start(): void {
    execFileSync(
      'redis-server',
      [
        '--bind',
        '127.0.0.1',
        '--port',
        String(this.port),
        '--dir',
        this.dir,
        '--save',
        '',
        '--appendonly',
        this.#opts.appendonly ? 'yes' : 'no',
        '--appendfsync',
        this.#opts.appendfsync,
        '--daemonize',
        'yes',
        '--pidfile',
        this.#pidfile,
        '--logfile',
        join(this.dir, 'redis.log'),
        ...this.#opts.args,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    // Answers LOADING until the AOF is replayed, PONG once it serves.
    for (let i = 0; i < 200; i++) {
      if (
        spawnSync('redis-cli', ['-p', String(this.port), 'ping'])
          .stdout?.toString()
          .includes('PONG')
      )
        return;
      spawnSync('sleep', ['0.05']);
    }
    throw new Error('private redis did not start');
  }

  /** SHUTDOWN keeps the AOF, so a restart brings the data back, as a production restart would. */
  stop(): void {
    spawnSync('redis-cli', ['-p', String(this.port), 'shutdown']);
  }

  /**
   * SIGKILL, as the OOM killer or a crashing process would: no shutdown, no final AOF
   * write or fsync. Returns once the process is gone (its port is free again).
   */
  kill9(): void {
    const pid = Number(readFileSync(this.#pidfile, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1) throw new Error(`bad pid in ${this.#pidfile}`);
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 200 && processRuns(pid); i++) spawnSync('sleep', ['0.02']);
    if (processRuns(pid)) throw new Error(`redis-server ${pid} survived SIGKILL`);
    rmSync(this.#pidfile, { force: true });
  }

  destroy(): void {
    spawnSync('redis-cli', ['-p', String(this.port), 'shutdown', 'nosave']);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Alive and not a zombie (a daemonised server killed here may wait to be reaped by init). */
function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function pgBin(name: string): string {
  const versions = spawnSync('sh', ['-c', 'ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1'])
    .stdout.toString()
    .trim();
  return join(versions, name);
}

export interface PrivatePostgresOptions {
  /** Server settings written to postgresql.conf, e.g. `wal_level`, `archive_command`. */
  settings?: Record<string, string>;
  /** Lines added to pg_hba.conf, e.g. `host replication all 127.0.0.1/32 trust`. */
  hba?: string[];
}

/** A throwaway PostgreSQL cluster in a temp directory (initdb, trust auth), for tests that stop it. */
export class PrivatePostgres {
  readonly dir = mkdtempSync(join(tmpdir(), 'tributary-pg-'));
  readonly port: number;

  /**
   * A new cluster made by initdb; with `from`, a streaming replica of that running cluster
   * instead (`pg_basebackup -R`: it follows the primary from its first start). The primary
   * must allow replication connections from 127.0.0.1 (`hba`).
   */
  constructor(port: number, opts: PrivatePostgresOptions & { from?: PrivatePostgres } = {}) {
    this.port = port;
    execFileSync('chown', ['postgres:postgres', this.dir]);
    if (opts.from) {
      this.#asPostgres(pgBin('pg_basebackup'), [
        '-D',
        this.dataDir,
        '-h',
        '127.0.0.1',
        '-p',
        String(opts.from.port),
        '-U',
        'postgres',
        '-R',
        '-X',
        'stream',
        '--checkpoint=fast',
        '--no-sync',
      ]);
    } else {
      this.#asPostgres(pgBin('initdb'), [
        '-D',
        this.dataDir,
        '-U',
        'postgres',
        '--auth=trust',
        '-E',
        'UTF8',
        '--no-sync',
      ]);
    }
    if (opts.hba?.length) appendFileSync(join(this.dataDir, 'pg_hba.conf'), `\n${opts.hba.join('\n')}\n`);
    const settings = Object.entries(opts.settings ?? {}).map(
      ([name, value]) => `${name} = '${value.replaceAll("'", "''")}'`,
    );
    if (settings.length) appendFileSync(join(this.dataDir, 'postgresql.conf'), `\n${settings.join('\n')}\n`);
  }

  /** The data directory (PGDATA). */
  get dataDir(): string {
    return join(this.dir, 'data');
  }

  /** Base URL of the cluster (database `postgres`). */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  start(): void {
    this.#asPostgres(pgBin('pg_ctl'), [
      '-D',
      this.dataDir,
      '-l',
      join(this.dir, 'log'),
      '-w',
      '-o',
      `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
      'start',
    ]);
  }

  /** Fast shutdown: connections are cut, as in a crash of the database host. */
  stop(): void {
    this.#asPostgres(pgBin('pg_ctl'), ['-D', this.dataDir, '-m', 'fast', '-w', 'stop']);
  }

  destroy(): void {
    spawnSync('runuser', [
      '-u',
      'postgres',
      '--',
      pgBin('pg_ctl'),
      '-D',
      this.dataDir,
      '-m',
      'immediate',
      'stop',
    ]);
    rmSync(this.dir, { recursive: true, force: true });
  }

  #asPostgres(cmd: string, args: string[]): void {
    execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  }
}

/**
 * A PostgreSQL server on a data directory that something else fills, e.g. a restore from a
 * backup: `dataDir` does not exist until then. In a temp directory of its own (owned by
 * postgres), which also holds its socket and log.
 */
export class RestoredPostgres {
  readonly dir = mkdtempSync(join(tmpdir(), 'tributary-pg-restored-'));
  readonly port: number;

  constructor(port: number) {
    this.port = port;
    execFileSync('chown', ['postgres:postgres', this.dir]);
  }

  get dataDir(): string {
    return join(this.dir, 'data');
  }

  /** Base URL of the cluster (database `postgres`). */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /**
   * Starts the server on the port given, whatever the restored postgresql.conf says; returns
   * once it accepts connections, which in archive recovery is as soon as it is consistent
   * (hot standby), not when the recovery has ended (`pg_is_in_recovery()`).
   */
  start(): void {
    execFileSync(
      'runuser',
      [
        '-u',
        'postgres',
        '--',
        pgBin('pg_ctl'),
        '-D',
        this.dataDir,
        '-l',
        join(this.dir, 'log'),
        '-w',
        '-t',
        '60',
        '-o',
        `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1`,
        'start',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
  }

  /** Stops the server if it runs (immediately) and removes everything. */
  destroy(): void {
    spawnSync('runuser', [
      '-u',
      'postgres',
      '--',
      pgBin('pg_ctl'),
      '-D',
      this.dataDir,
      '-m',
      'immediate',
      'stop',
    ]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
