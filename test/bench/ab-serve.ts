/**
 * Two `serve` set-ups side by side, measured in alternating rounds with wrk (same run, same
 * machine, so their ratio holds on a noisy host):
 *
 *   node test/bench/ab-serve.ts --compare metrics        [--rounds 4] [--seconds 8]
 *     recording Prometheus metrics on vs stubbed out (a preload turns every prom-client
 *     recording call into a no-op); single events
 *   node test/bench/ab-serve.ts --compare api-processes  [--batch 100]
 *     API_PROCESSES=1 vs 2 (Node cluster on one host)
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ADMIN_KEY, createTestEnv, deleteKeys } from '../helpers/env.ts';
import { runTributary } from '../helpers/processes.ts';
import { killAllChildren, startServe, stopChild } from './children.ts';
import { ensureWrk, runWrk } from './wrk.ts';

const { values } = parseArgs({
  options: {
    compare: { type: 'string', default: 'metrics' },
    rounds: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '8' },
    batch: { type: 'string' },
  },
});
const PRELOAD = fileURLToPath(new URL('./overhead/no-metrics.mjs', import.meta.url));

async function main(): Promise<void> {
  ensureWrk();
  const env = createTestEnv();
  try {
    const base = env.env({ LOG_LEVEL: 'info', BUFFER_MAX_EVENTS: '100000000', DEDUPE_WINDOW_S: '0' });
    const migrated = await runTributary(['migrate'], base);
    if (migrated.code !== 0) throw new Error(migrated.stderr);
    const variants: Record<string, [string, Record<string, string>, string, Record<string, string>]> = {
      metrics: ['with metrics', {}, 'without metrics', { NODE_OPTIONS: `--import=${PRELOAD}` }],
      'api-processes': ['1 API process', { API_PROCESSES: '1' }, '2 API processes', { API_PROCESSES: '2' }],
    };
    const variant = variants[values.compare ?? 'metrics'];
    if (!variant) throw new Error(`--compare must be one of ${Object.keys(variants).join(', ')}`);
    const [a, aEnv, b, bEnv] = variant;
    const batch = Number(values.batch ?? (values.compare === 'api-processes' ? 100 : 0));
    const servers: Record<string, Awaited<ReturnType<typeof startServe>>> = {
      [a]: await startServe({ ...base, ...aEnv }),
      [b]: await startServe({ ...base, ...bEnv }),
    };
    const rates: Record<string, number[]> = { [a]: [], [b]: [] };
    const rounds = Number(values.rounds);
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? [a, b] : [b, a];
      for (const name of order) {
        const result = await runWrk({
          url: (servers[name] as { url: string }).url,
          path: batch > 0 ? '/v1/events/batch' : '/v1/events',
          batch,
          connections: 64,
          threads: 1,
          durationS: Number(values.seconds),
          apiKey: ADMIN_KEY,
        });
        const perSecond = (result.requests * Math.max(1, batch)) / result.durationS;
        rates[name]?.push(perSecond);
        process.stderr.write(
          `[bench] round ${r + 1} ${name}: ${Math.round(perSecond)} events/s, non-2xx ${result.non2xx}\n`,
        );
        await deleteKeys(env.redis, `${env.prefix}:*`);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const ma = median(rates[a] as number[]);
    const mb = median(rates[b] as number[]);
    process.stdout.write(
      `${JSON.stringify({ compare: values.compare, batch, rates, median: { [a]: Math.round(ma), [b]: Math.round(mb) }, ratio: `${a} / ${b} = ${(ma / mb).toFixed(3)}` }, null, 2)}\n`,
    );
    for (const s of Object.values(servers)) await stopChild(s.child);
  } finally {
    killAllChildren();
    await env.cleanup();
  }
}

await main();
