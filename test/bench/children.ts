import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { onJsonLines } from '../helpers/json-lines.ts';
import { NODE_FLAGS } from '../helpers/processes.ts';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
const TRIVIAL = fileURLToPath(new URL('./trivial-server.ts', import.meta.url));

/** Every child the bench started; all are killed when the bench exits, however it exits. */
const children = new Set<ChildProcess>();

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** SIGKILLs whatever is still running; synchronous, so it also works in an `exit` handler. */
export function killAllChildren(): void {
  for (const child of children) if (alive(child)) child.kill('SIGKILL');
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child is gone. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (!alive(child)) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

export interface ServerChild {
  child: ChildProcess;
  pid: number;
  url: string;
  stderr(): string;
}

function collectStderr(child: ChildProcess): () => string {
  let text = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    text = (text + chunk).slice(-8_000);
  });
  return () => text;
}

/** Polls `url` until it answers 200; fails when the child exits first or after `timeoutMs`. */
async function waitHttpOk(child: ChildProcess, url: string, stderr: () => string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive(child))
      throw new Error(`process exited (${child.exitCode}) before ready; stderr: ${stderr()}`);
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms; stderr: ${stderr()}`);
}

/** Where a `serve` writes its log lines, and which checkout it runs. */
export interface ServeOptions {
  /** Another checkout's `src/main.ts`, when two revisions are compared. */
  main?: string;
  /**
   * A file its stdout (the JSON logs, info level as in production) is appended to, as a
   * container runtime captures a container's output; absent, /dev/null. Either way no pipe
   * reader in the bench slows the server down.
   */
  logFile?: string;
}

/** `tributary serve` on a free port, ready (its `/health/live` answered 200). */
export async function startServe(env: Record<string, string>, opts: ServeOptions = {}): Promise<ServerChild> {
  const port = await freePort();
  const out = opts.logFile ? openSync(opts.logFile, 'a') : 'ignore';
  const child = track(
    spawn(process.execPath, [...NODE_FLAGS, opts.main ?? MAIN, 'serve'], {
      env: { PATH: process.env.PATH ?? '', ...env, PORT: String(port) },
      stdio: ['ignore', out, 'pipe'],
    }),
  );
  // The child holds its own copy of the descriptor.
  if (typeof out === 'number') closeSync(out);
  const stderr = collectStderr(child);
  const url = `http://127.0.0.1:${port}`;
  await waitHttpOk(child, `${url}/health/live`, stderr);
  return { child, pid: child.pid ?? 0, url, stderr };
}

export interface BatchLog {
  /** When the batch was committed and logged, ms since the epoch. */
  time: number;
  inserted: number;
  /** How long the batch took, ms. */
  ms: number;
}

export interface WorkerChild {
  child: ChildProcess;
  pid: number;
  /** `batch` log lines seen so far. */
  batches: BatchLog[];
  stderr(): string;
}

/**
 * `tributary work`, its stdout parsed for "worker started" and the per-batch log lines
 * (one per BATCH_SIZE rows: little enough not to matter). Spawned here rather than with
 * test/helpers' startTributary so the bench tracks (and kills) the child even when it never
 * becomes ready.
 */
export async function startWorker(env: Record<string, string>, timeoutMs = 30_000): Promise<WorkerChild> {
  const child = track(
    spawn(process.execPath, [...NODE_FLAGS, MAIN, 'work'], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const stderr = collectStderr(child);
  const batches: BatchLog[] = [];
  const started = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`worker not started within ${timeoutMs} ms; stderr: ${stderr()}`)),
      timeoutMs,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited (${code}) before it started; stderr: ${stderr()}`));
    });
    onJsonLines(child.stdout, (parsed) => {
      if (parsed.msg === 'worker started') {
        clearTimeout(timer);
        resolve();
      } else if (parsed.msg === 'batch') {
        batches.push({
          time: Date.parse(String(parsed.time)),
          inserted: Number(parsed.inserted),
          ms: Number(parsed.ms),
        });
      }
    });
  });
  await started;
  return { child, pid: child.pid ?? 0, batches, stderr };
}

/** The baseline Hono app; it prints one line with its port and nothing else. */
export function startTrivial(): Promise<ServerChild> {
  return startScript(TRIVIAL, {});
}

/**
 * A bench server script (the baseline, a peer) that prints `{"msg":"listening","port"}` first.
 * It runs with Tributary's Node flags, so runtime tuning is the same on every side.
 */
export async function startScript(file: string, env: Record<string, string>): Promise<ServerChild> {
  const child = track(
    spawn(process.execPath, [...NODE_FLAGS, file], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
  );
  const stderr = collectStderr(child);
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        try {
          resolve(Number((JSON.parse(line) as { port: number }).port));
        } catch (err) {
          reject(err);
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`${file} exited (${code}); ${stderr()}`)));
  });
  return { child, pid: child.pid ?? 0, url: `http://127.0.0.1:${port}`, stderr };
}
