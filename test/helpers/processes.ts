import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onJsonLines } from './json-lines.ts';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
/** The V8 flags the service is run with everywhere (package.json, Dockerfile, main.ts's shebang). */
export const NODE_FLAGS = ['--max-semi-space-size=16'];

export interface TributaryProcess {
  child: ChildProcess;
  /** Parsed JSON log lines seen so far. */
  logs: Record<string, unknown>[];
  /** HTTP base URL, for `serve`/`all`. */
  url: string;
  /** Resolves on a log line matching `pred`. */
  waitForLog(
    pred: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** SIGTERM (graceful) and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill9(): Promise<void>;
  exited: Promise<number | null>;
}

/** Runs `tributary ROLE` as a real process, through the CLI, with its own environment. */
export async function startTributary(role: string, env: Record<string, string>): Promise<TributaryProcess> {
  // Each worker gets its own checkpoint directory unless the test names one (to restart
  // a worker on the same directory); a directory the helper made goes when the process does.
  let ownDir: string | undefined;
  if ((role === 'work' || role === 'all') && !env.CHECKPOINT_DIR) {
    ownDir = mkdtempSync(join(tmpdir(), 'tributary-checkpoint-'));
  }
  const child = spawn(process.execPath, [...NODE_FLAGS, MAIN, role], {
    env: { PATH: process.env.PATH ?? '', ...(ownDir ? { CHECKPOINT_DIR: ownDir } : {}), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const waiters: {
    pred: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }[] = [];
  let stderr = '';
  onJsonLines(child.stdout, (parsed) => {
    logs.push(parsed);
    for (const w of [...waiters]) {
      if (w.pred(parsed)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(parsed);
      }
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = once(child, 'exit').then(([code]) => {
    if (ownDir) rmSync(ownDir, { recursive: true, force: true });
    return code as number | null;
  });

  const waitForLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000) => {
    const seen = logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${role}: no matching log line within ${timeoutMs} ms; stderr: ${stderr}`)),
        timeoutMs,
      );
      waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${role} exited with ${code}; stderr: ${stderr}`));
      });
    });
  };

  let url = '';
  try {
    if (role === 'serve' || role === 'all') {
      const line = await waitForLog((l) => l.msg === 'listening');
      url = `http://127.0.0.1:${line.port}`;
    } else if (role === 'work') {
      await waitForLog((l) => l.msg === 'worker started');
    }
  } catch (err) {
    // Not ready in time: nothing will stop it later, so stop it here rather than leave it
    // running (and loading the machine) after the test.
    child.kill('SIGKILL');
    throw err;
  }

  return {
    child,
    logs,
    url,
    waitForLog,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      return exited;
    },
    async kill9() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Runs a CLI command to completion and returns its output (`main`: another checkout's src/main.ts). */
export async function runTributary(
  args: string[],
  env: Record<string, string>,
  options: { main?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...NODE_FLAGS, options.main ?? MAIN, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    stdout += c;
  });
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  const [code] = await once(child, 'exit');
  return { code: code as number | null, stdout, stderr };
}

/** A CLI command's result: the last stdout line that is not a log line. */
export function cliResult(stdout: string): Record<string, unknown> {
  const lines = stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => !('level' in l));
  const last = lines.at(-1);
  if (!last) throw new Error(`no result line in: ${stdout.slice(-500)}`);
  return last;
}
