/** Runs wrk (from apt) with wrk/ingest.lua and reads the JSON line its `done` hook prints. */
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { track } from './children.ts';

const SCRIPT = fileURLToPath(new URL('./wrk/ingest.lua', import.meta.url));

export interface WrkSpec {
  url: string;
  path: string;
  /** Events per request; 0 sends a single event (not wrapped in a batch). */
  batch: number;
  connections: number;
  threads: number;
  durationS: number;
  apiKey?: string;
  /**
   * `segment`: Segment batches of `batch` track calls (wrk/ingest.lua); `native-rich`: native
   * events carrying what those calls carry; `plans`: `order.completed` events of `service`
   * with 20 metadata properties (test/bench/plans.ts); default: native events.
   */
  format?: 'native' | 'native-rich' | 'segment' | 'plans';
  /** `plans`: the service of every event (one with a tracking plan, or one without). */
  service?: string;
  /** An Authorization header sent with every request (a Segment write key as Basic auth). */
  authorization?: string;
}

export interface WrkResult {
  requests: number;
  durationS: number;
  non2xx: number;
  socketErrors: number;
  p50Ms: number;
  p99Ms: number;
}

/** Installs wrk with apt when it is missing and we may (root); otherwise says how. */
export function ensureWrk(): void {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return;
  } catch (err) {
    // wrk --version exits 1 even when present; only ENOENT means it is missing.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return;
  }
  if (process.getuid?.() !== 0)
    throw new Error('wrk (the load generator) is not installed: run `sudo apt-get install -y wrk`');
  const apt = (args: string[]) =>
    execFileSync('apt-get', args, {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  process.stderr.write('[bench] wrk is missing: installing it with apt\n');
  try {
    apt(['install', '-y', '-q', 'wrk']);
  } catch {
    // A fresh machine may have no package lists yet.
    apt(['update', '-q']);
    apt(['install', '-y', '-q', 'wrk']);
  }
}

/** Runs wrk; `onStart` gets its pid (for CPU metering) as soon as it runs. */
export function runWrk(spec: WrkSpec, onStart: (pid: number) => void = () => {}): Promise<WrkResult> {
  const child = track(
    spawn(
      'wrk',
      [
        `-t${spec.threads}`,
        `-c${spec.connections}`,
        `-d${spec.durationS}s`,
        '--timeout',
        '10s',
        '-s',
        SCRIPT,
        spec.url,
      ],
      {
        env: {
          PATH: process.env.PATH ?? '',
          BENCH_BATCH: String(spec.batch),
          BENCH_PATH: spec.path,
          BENCH_KEY: spec.apiKey ?? '',
          BENCH_FORMAT: spec.format ?? 'native',
          BENCH_AUTH: spec.authorization ?? '',
          BENCH_SERVICE: spec.service ?? '',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    ),
  );
  onStart(child.pid ?? 0);
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => {
      const line = /^BENCH_JSON (.*)$/m.exec(out)?.[1];
      if (code !== 0 || !line) return reject(new Error(`wrk exited ${code}: ${out.slice(-500)}`));
      const r = JSON.parse(line) as Record<string, number>;
      resolve({
        requests: r.requests ?? 0,
        durationS: (r.durationUs ?? 0) / 1e6,
        non2xx: r.non2xx ?? 0,
        socketErrors: (r.connect ?? 0) + (r.read ?? 0) + (r.write ?? 0) + (r.timeout ?? 0),
        p50Ms: (r.p50us ?? 0) / 1000,
        p99Ms: (r.p99us ?? 0) / 1000,
      });
    });
  });
}
