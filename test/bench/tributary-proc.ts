import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { NODE_FLAGS } from '../helpers/processes.ts';

const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;

/** Peak resident set (VmHWM) of a running process, polled every 100 ms; read `peakMb` at the end. */
export function watchPeakRss(child: ChildProcess): { readonly peakMb: number; stop(): void } {
  let peakKb = 0;
  const timer = setInterval(async () => {
    try {
      const hwm = /VmHWM:\s+(\d+)/.exec(await readFile(`/proc/${child.pid}/status`, 'utf8'));
      if (hwm) peakKb = Math.max(peakKb, Number(hwm[1]));
    } catch {
      // exited
    }
  }, 100);
  return {
    get peakMb() {
      return Math.round(peakKb / 1024);
    },
    stop: () => clearInterval(timer),
  };
}

/** Spawns `tributary ARGS` with Tributary's Node flags and a minimal environment. */
export function spawnTributary(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [...NODE_FLAGS, MAIN, ...args], {
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn', RETENTION_SCHEDULE: 'off', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

/** Runs the CLI to completion; returns stdout's last line (JSON), wall time and peak RSS. */
export async function runCli(args: string[], env: Record<string, string>) {
  const started = performance.now();
  const child = spawnTributary(args, env);
  const rss = watchPeakRss(child);
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  const [code] = await once(child, 'exit');
  rss.stop();
  if (code !== 0) throw new Error(`tributary ${args.join(' ')} exited ${code}: ${out}`);
  return {
    last: JSON.parse(out.trim().split('\n').at(-1) as string) as Record<string, unknown>,
    seconds: (performance.now() - started) / 1000,
    peakMb: rss.peakMb,
  };
}
