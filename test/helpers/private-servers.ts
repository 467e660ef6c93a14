import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
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

/** A throwaway redis-server in a temp directory, for tests that stop and restart it. */
export class PrivateRedis {
  readonly dir = mkdtempSync(join(tmpdir(), 'tributary-redis-'));
  readonly port: number;

  constructor(port: number) {
    this.port = port;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

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
        'yes',
        '--daemonize',
        'yes',
        '--pidfile',
        join(this.dir, 'redis.pid'),
        '--logfile',
        join(this.dir, 'redis.log'),
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    for (let i = 0; i < 100; i++) {
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

  destroy(): void {
    spawnSync('redis-cli', ['-p', String(this.port), 'shutdown', 'nosave']);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function pgBin(name: string): string {
  const versions = spawnSync('sh', ['-c', 'ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1'])
    .stdout.toString()
    .trim();
  return join(versions, name);
}

/** A throwaway PostgreSQL cluster in a temp directory (initdb, trust auth), for tests that stop it. */
export class PrivatePostgres {
  readonly dir = mkdtempSync(join(tmpdir(), 'tributary-pg-'));
  readonly port: number;

  constructor(port: number) {
    this.port = port;
    execFileSync('chown', ['postgres:postgres', this.dir]);
    this.#asPostgres(pgBin('initdb'), [
      '-D',
      join(this.dir, 'data'),
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
      '--no-sync',
    ]);
  }

  /** Base URL of the cluster (database `postgres`). */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  start(): void {
    this.#asPostgres(pgBin('pg_ctl'), [
      '-D',
      join(this.dir, 'data'),
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
    this.#asPostgres(pgBin('pg_ctl'), ['-D', join(this.dir, 'data'), '-m', 'fast', '-w', 'stop']);
  }

  destroy(): void {
    spawnSync('runuser', [
      '-u',
      'postgres',
      '--',
      pgBin('pg_ctl'),
      '-D',
      join(this.dir, 'data'),
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
