/**
 * Where the API's CPU goes, as deployed (deployed.ts): `serve` under `--cpu-prof` takes wrk
 * load for a while, then its profile is summed by self time and grouped by package
 * (node_modules/<package>, Tributary's src/<dir>, node:<module>, V8's own: GC, program).
 *
 *   node test/bench/profile.ts [--batch 100] [--seconds 10] [--top 40] [--keep DIR]
 *     [--env NAME=VALUE ...] [--gc]
 *
 * Prints the groups and the top functions by self time, as % of the profiled CPU and µs per
 * event; `--gc` adds the garbage collector's pauses by kind (count, p50, p99, max); `--keep
 * DIR` keeps the .cpuprofile (open it in Chrome's DevTools) and the server's log.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createTestEnv } from '../helpers/env.ts';
import { runTributary } from '../helpers/processes.ts';
import { killAllChildren, startServe, stopChild } from './children.ts';
import { createIngestKey, WRK_SERVICES } from './deployed.ts';
import { ensureWrk, runWrk } from './wrk.ts';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '0' },
    seconds: { type: 'string', default: '10' },
    top: { type: 'string', default: '40' },
    keep: { type: 'string' },
    env: { type: 'string', multiple: true, default: [] },
    gc: { type: 'boolean', default: false },
  },
});
const batch = Number(values.batch);
const GC_PRELOAD = fileURLToPath(new URL('./overhead/gc-pauses.mjs', import.meta.url));
const seconds = Number(values.seconds);

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** The group a frame's self time counts under. */
export function groupOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const parts = url.slice(modules + '/node_modules/'.length).split('/');
    return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? url);
  }
  const src = url.indexOf('/src/');
  if (src < 0) return url;
  const dir = url
    .slice(src + 5)
    .split('/')
    .slice(0, -1)
    .join('/');
  return `src/${dir || '.'}`;
}

/** Self time per node id, µs, from the samples and their time deltas. */
function selfTimes(p: Profile): Map<number, number> {
  const out = new Map<number, number>();
  p.samples.forEach((id, i) => {
    out.set(id, (out.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  });
  return out;
}

function summarise(p: Profile, events: number): void {
  const self = selfTimes(p);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const groups = new Map<string, number>();
  const functions = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const node = byId.get(id);
    if (!node) continue;
    const { url, functionName, lineNumber } = node.callFrame;
    if (functionName === '(idle)') continue;
    total += us;
    const group = groupOf(url, functionName);
    groups.set(group, (groups.get(group) ?? 0) + us);
    const fn = `${functionName || '(anonymous)'} ${url ? `${url.replace(/^.*\/(node_modules|src)\//, '$1/')}:${lineNumber + 1}` : ''}`;
    functions.set(fn, (functions.get(fn) ?? 0) + us);
  }
  const line = (name: string, us: number) =>
    `${((us / total) * 100).toFixed(1).padStart(5)} %  ${(us / events).toFixed(2).padStart(7)} µs/ev  ${name}`;
  process.stdout.write(
    `\nprofiled CPU ${(total / 1e6).toFixed(2)} s for ${events} events: ${(total / events).toFixed(1)} µs per event\n\nby package\n`,
  );
  for (const [g, us] of [...groups].sort((a, b) => b[1] - a[1]).slice(0, 30))
    process.stdout.write(`${line(g, us)}\n`);
  process.stdout.write('\ntop functions by self time\n');
  for (const [f, us] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top)))
    process.stdout.write(`${line(f, us)}\n`);
}

async function main(): Promise<void> {
  ensureWrk();
  const env = createTestEnv();
  const dir = values.keep ? resolve(values.keep) : mkdtempSync(join(tmpdir(), 'tributary-profile-'));
  mkdirSync(dir, { recursive: true });
  try {
    const extra = Object.fromEntries(
      (values.env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    const serveEnv = env.env({ LOG_LEVEL: 'info', BUFFER_MAX_EVENTS: '100000000', ...extra });
    const migrated = await runTributary(['migrate'], serveEnv);
    if (migrated.code !== 0) throw new Error(migrated.stderr);
    const server = await startServe(
      {
        ...serveEnv,
        NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${dir}${values.gc ? ` --import=${GC_PRELOAD}` : ''}`,
        ...(values.gc ? { GC_REPORT: join(dir, 'gc.json') } : {}),
      },
      { logFile: join(dir, 'serve.log') },
    );
    const apiKey = await createIngestKey(server, 'profile', WRK_SERVICES);
    const spec = {
      url: server.url,
      path: batch > 0 ? '/v1/events/batch' : '/v1/events',
      batch,
      connections: batch > 0 ? 10 : 50,
      threads: 1,
      apiKey,
    };
    const warm = await runWrk({ ...spec, durationS: 3 });
    await env.redis.del(...Array.from({ length: 8 }, (_, i) => `${env.prefix}:events:{${i}}`));
    const result = await runWrk({ ...spec, durationS: seconds });
    await stopChild(server.child);
    const answered = (r: typeof result) => (r.requests - r.non2xx) * Math.max(1, batch);
    process.stdout.write(
      `${Math.round(answered(result) / result.durationS)} events/s (${result.non2xx} non-2xx) over ${result.durationS.toFixed(1)} s\n`,
    );
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error(`no profile written in ${dir}`);
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile;
    // The profile covers the warm-up too (and start-up, which is small): per event of both runs.
    summarise(profile, answered(warm) + answered(result));
    if (values.gc)
      process.stdout.write(`\ngarbage collection pauses, ms\n${readFileSync(join(dir, 'gc.json'), 'utf8')}`);
    if (values.keep) process.stdout.write(`\nprofile: ${join(dir, file)}\n`);
  } finally {
    killAllChildren();
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
    await env.cleanup();
  }
}

await main();
