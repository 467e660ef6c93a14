import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, chmodSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import pg from 'pg';
import { freePort } from './private-servers.ts';
import { waitFor } from './wait.ts';

export interface PgBouncerStats {
  /** Transactions PgBouncer ran for the database, on any server connection. */
  transactions: number;
  queries: number;
}

export interface PgBouncerOptions {
  /** Server connections per database and user: few, so clients really share them. */
  poolSize?: number;
}

/** `pgbouncer` on PATH or in /usr/sbin; installed from apt when missing and we are root. */
function pgbouncerBinary(): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'];
  const find = () =>
    dirs
      .map((d) => join(d, 'pgbouncer'))
      .find((p) => {
        try {
          accessSync(p, constants.X_OK);
          return true;
        } catch {
          return false;
        }
      });
  const found = find();
  if (found) return found;
  if (process.getuid?.() !== 0) {
    throw new Error(
      'pgbouncer is not installed (run the tests with ops/local, or: apt-get install pgbouncer)',
    );
  }
  // ops/local installs it for test runs; this covers `npm test` run without it, as root.
  const apt = (args: string[]) =>
    execFileSync('apt-get', args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  try {
    apt(['install', '-y', '-q', 'pgbouncer']);
  } catch {
    apt(['update', '-q']);
    apt(['install', '-y', '-q', 'pgbouncer']);
  }
  const installed = find();
  if (!installed) throw new Error('apt-get installed pgbouncer, but no pgbouncer binary was found');
  return installed;
}

/** PgBouncer will not run as root: it drops to this user (the server's own, when there is one). */
function unprivilegedUser(): string {
  const passwd = readFileSync('/etc/passwd', 'utf8');
  return /^postgres:/m.test(passwd) ? 'postgres' : 'nobody';
}

async function waitForPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`pgbouncer exited with ${child.exitCode}: ${log()}`);
      return new Promise<boolean>((resolve) => {
        const socket = connect(port, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      });
    },
    10_000,
    `pgbouncer listening on ${port}`,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${log()}`);
  });
}

/**
 * A private PgBouncer in transaction pooling mode on a free loopback port, in front of the
 * PostgreSQL at `upstream` (any database on it: `* =`). Clients authenticate with `trust`;
 * PgBouncer logs in to the server as the client's user, with the password from `upstream`
 * when it has one. Only a handful of server connections per database, so statements of
 * different clients really do interleave on them, as in production.
 */
export class PrivatePgBouncer {
  readonly port: number;
  readonly #child: ChildProcess;
  readonly #dir: string;
  readonly #user: string;
  #log = '';

  private constructor(port: number, child: ChildProcess, dir: string, user: string) {
    this.port = port;
    this.#child = child;
    this.#dir = dir;
    this.#user = user;
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.#log = (this.#log + chunk).slice(-20_000);
    });
  }

  static async start(upstream: string, opts: PgBouncerOptions = {}): Promise<PrivatePgBouncer> {
    const binary = pgbouncerBinary();
    const server = new URL(upstream);
    const user = decodeURIComponent(server.username || 'postgres');
    const password = decodeURIComponent(server.password);
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'tributary-pgbouncer-'));
    chmodSync(dir, 0o755);
    const quote = (s: string) => `"${s.replaceAll('"', '""')}"`;
    writeFileSync(join(dir, 'userlist.txt'), `${quote(user)} ${quote(password)}\n`, { mode: 0o644 });
    writeFileSync(
      join(dir, 'pgbouncer.ini'),
      [
        '[databases]',
        `* = host=${server.hostname || '127.0.0.1'} port=${server.port || '5432'}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        'unix_socket_dir =',
        'auth_type = trust',
        `auth_file = ${join(dir, 'userlist.txt')}`,
        `admin_users = ${user}`,
        'pool_mode = transaction',
        `default_pool_size = ${opts.poolSize ?? 5}`,
        'max_client_conn = 500',
        // A client waiting this long for a server connection fails: a deadlock shows quickly.
        'query_wait_timeout = 30',
        // Nothing is ignored: a client sending a startup parameter PgBouncer cannot keep fails.
        'ignore_startup_parameters =',
        'logfile =',
        '',
      ].join('\n'),
      { mode: 0o644 },
    );
    const root = process.getuid?.() === 0;
    const args = [...(root ? ['-u', unprivilegedUser()] : []), join(dir, 'pgbouncer.ini')];
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const bouncer = new PrivatePgBouncer(port, child, dir, user);
    try {
      await waitForPort(port, child, () => bouncer.#log);
    } catch (err) {
      await bouncer.stop();
      throw err;
    }
    return bouncer;
  }

  /** A URL for `database` through PgBouncer. */
  url(database: string): string {
    return `postgres://${encodeURIComponent(this.#user)}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  /** What PgBouncer's admin console reports for `database` (SHOW STATS). */
  async stats(database: string): Promise<PgBouncerStats> {
    const admin = new pg.Client({ connectionString: this.url('pgbouncer') });
    await admin.connect();
    try {
      const { rows } = await admin.query<Record<string, string>>('SHOW STATS');
      const row = rows.find((r) => r.database === database);
      return {
        transactions: Number(row?.total_xact_count ?? 0),
        queries: Number(row?.total_query_count ?? 0),
      };
    } finally {
      await admin.end();
    }
  }

  /** PgBouncer's log so far (its stderr), for failure messages. */
  get log(): string {
    return this.#log;
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      const exited = once(this.#child, 'exit');
      this.#child.kill('SIGTERM');
      await exited;
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
