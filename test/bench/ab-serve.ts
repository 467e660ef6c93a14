/**
 * Two `serve` set-ups side by side, measured in alternating rounds with wrk (same run, same
 * machine, so their ratio holds on a noisy host), the load presenting a stored key with a
 * rate limit, bound to its services, as deployed (deployed.ts):
 *
 *   node test/bench/ab-serve.ts --compare metrics        [--rounds 4] [--seconds 8]
 *     recording Prometheus metrics on vs stubbed out (a preload turns every prom-client
 *     recording call into a no-op); single events
 *   node test/bench/ab-serve.ts --compare api-processes  [--batch 100]
 *     API_PROCESSES=1 vs 2 (Node cluster on one host)
 *   node test/bench/ab-serve.ts --compare service-check  [--batch N]
 *     a stored key bound to the services the load sends vs a stored key bound to none (every
 *     service allowed): the cost of the per-event service check
 *   node test/bench/ab-serve.ts --compare revision --base DIR  [--batch N]
 *     this checkout vs another checkout of Tributary at DIR (e.g. a `git worktree` of an
 *     earlier commit, with node_modules), each against its own freshly migrated database
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createTestEnv, deleteKeys, type TestEnv } from '../helpers/env.ts';
import { cliResult, runTributary } from '../helpers/processes.ts';
import { killAllChildren, type ServerChild, startServe, stopChild } from './children.ts';
import { DEPLOYED_RATE_LIMIT, WRK_SERVICES } from './deployed.ts';
import { ensureWrk, runWrk } from './wrk.ts';

const { values } = parseArgs({
  options: {
    compare: { type: 'string', default: 'metrics' },
    rounds: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '8' },
    batch: { type: 'string' },
    base: { type: 'string' },
  },
});
const PRELOAD = fileURLToPath(new URL('./overhead/no-metrics.mjs', import.meta.url));

/** One side of a comparison: how its server starts and which key the load presents. */
interface Side {
  name: string;
  start(): Promise<ServerChild>;
  apiKey: string;
  /** Its Redis prefix, emptied between rounds. */
  env: TestEnv;
}

const baseEnv = (env: TestEnv) =>
  env.env({ LOG_LEVEL: 'info', BUFFER_MAX_EVENTS: '100000000', DEDUPE_WINDOW_S: '0' });

async function migrated(env: TestEnv, main?: string): Promise<TestEnv> {
  const result = await runTributary(['migrate'], baseEnv(env), main ? { main } : undefined);
  if (result.code !== 0) throw new Error(result.stderr);
  return env;
}

/**
 * A stored key with the ingest scope and the deployed rate limit (and `services`, when given),
 * made through the CLI: what the load presents to both sides unless a comparison says otherwise.
 */
async function storedKey(env: TestEnv, services: string[]): Promise<string> {
  const args = ['keys', 'create', '--name', `bench-${services.length}`, '--scopes', 'ingest'];
  args.push('--rate-limit', String(DEPLOYED_RATE_LIMIT));
  if (services.length > 0) args.push('--services', services.join(','));
  const result = await runTributary(args, baseEnv(env));
  if (result.code !== 0) throw new Error(result.stderr);
  const { key } = cliResult(result.stdout);
  if (typeof key !== 'string') throw new Error(`keys create printed no key: ${result.stdout}`);
  return key;
}

async function sides(envs: TestEnv[]): Promise<[Side, Side]> {
  const [env] = envs as [TestEnv];
  const base = baseEnv(env);
  const deployedKey = await storedKey(env, WRK_SERVICES);
  const same = (name: string, extra: Record<string, string>, apiKey = deployedKey): Side => ({
    name,
    start: () => startServe({ ...base, ...extra }),
    apiKey,
    env,
  });
  switch (values.compare) {
    case 'metrics':
      return [same('with metrics', {}), same('without metrics', { NODE_OPTIONS: `--import=${PRELOAD}` })];
    case 'api-processes':
      return [same('1 API process', { API_PROCESSES: '1' }), same('2 API processes', { API_PROCESSES: '2' })];
    case 'service-check':
      return [
        same('key bound to its services', {}, deployedKey),
        same('key for every service', {}, await storedKey(env, [])),
      ];
    case 'revision': {
      if (!values.base) throw new Error('--compare revision needs --base DIR (another checkout)');
      const dir = resolve(values.base);
      const other = await migrated(createTestEnv(), `${dir}/src/main.ts`);
      envs.push(other);
      return [
        same('this checkout', {}),
        {
          name: `checkout at ${dir}`,
          start: () => startServe(baseEnv(other), { main: `${dir}/src/main.ts` }),
          apiKey: await storedKey(other, WRK_SERVICES),
          env: other,
        },
      ];
    }
    default:
      throw new Error('--compare must be one of metrics, api-processes, service-check, revision');
  }
}

async function main(): Promise<void> {
  ensureWrk();
  const envs = [createTestEnv()];
  try {
    await migrated(envs[0] as TestEnv);
    const [a, b] = await sides(envs);
    const batch = Number(values.batch ?? (values.compare === 'api-processes' ? 100 : 0));
    const servers = new Map<Side, ServerChild>([
      [a, await a.start()],
      [b, await b.start()],
    ]);
    const rates = new Map<Side, number[]>([
      [a, []],
      [b, []],
    ]);
    const rounds = Number(values.rounds);
    for (let r = 0; r < rounds; r++) {
      for (const side of r % 2 === 0 ? [a, b] : [b, a]) {
        const result = await runWrk({
          url: (servers.get(side) as ServerChild).url,
          path: batch > 0 ? '/v1/events/batch' : '/v1/events',
          batch,
          connections: 64,
          threads: 1,
          durationS: Number(values.seconds),
          apiKey: side.apiKey,
        });
        const perSecond = (result.requests * Math.max(1, batch)) / result.durationS;
        rates.get(side)?.push(perSecond);
        process.stderr.write(
          `[bench] round ${r + 1} ${side.name}: ${Math.round(perSecond)} events/s, non-2xx ${result.non2xx}\n`,
        );
        await deleteKeys(side.env.redis, `${side.env.prefix}:*`);
      }
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;
    const ma = median(rates.get(a) as number[]);
    const mb = median(rates.get(b) as number[]);
    process.stdout.write(
      `${JSON.stringify(
        {
          compare: values.compare,
          batch,
          rates: { [a.name]: rates.get(a), [b.name]: rates.get(b) },
          median: { [a.name]: Math.round(ma), [b.name]: Math.round(mb) },
          ratio: `${a.name} / ${b.name} = ${(ma / mb).toFixed(3)}`,
        },
        null,
        2,
      )}\n`,
    );
    for (const s of servers.values()) await stopChild(s.child);
  } finally {
    killAllChildren();
    for (const env of envs) await env.cleanup();
  }
}

await main();
