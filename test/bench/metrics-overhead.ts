/**
 * What recording Prometheus metrics costs ingest: two `serve` processes, identical but for
 * a preload that turns every prom-client recording call into a no-op in one of them,
 * measured in alternating rounds with wrk (single events, POST /v1/events).
 *
 *   node test/bench/metrics-overhead.ts [--rounds 4] [--seconds 8]
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ADMIN_KEY, createTestEnv, deleteKeys } from '../helpers/env.ts';
import { runTributary } from '../helpers/processes.ts';
import { killAllChildren, startServe, stopChild } from './children.ts';
import { ensureWrk, runWrk } from './wrk.ts';

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '4' }, seconds: { type: 'string', default: '8' } },
});
const PRELOAD = fileURLToPath(new URL('./overhead/no-metrics.mjs', import.meta.url));

async function main(): Promise<void> {
  ensureWrk();
  const env = createTestEnv();
  try {
    const base = env.env({ LOG_LEVEL: 'info', BUFFER_MAX_EVENTS: '100000000', DEDUPE_WINDOW_S: '0' });
    const migrated = await runTributary(['migrate'], base);
    if (migrated.code !== 0) throw new Error(migrated.stderr);
    const servers = {
      'with metrics': await startServe(base),
      'without metrics': await startServe({ ...base, NODE_OPTIONS: `--import=${PRELOAD}` }),
    };
    const rates: Record<string, number[]> = { 'with metrics': [], 'without metrics': [] };
    const rounds = Number(values.rounds);
    for (let r = 0; r < rounds; r++) {
      const order =
        r % 2 === 0
          ? (['with metrics', 'without metrics'] as const)
          : (['without metrics', 'with metrics'] as const);
      for (const name of order) {
        const result = await runWrk({
          url: servers[name].url,
          path: '/v1/events',
          batch: 0,
          connections: 64,
          threads: 1,
          durationS: Number(values.seconds),
          apiKey: ADMIN_KEY,
        });
        rates[name]?.push(result.requests / result.durationS);
        process.stderr.write(
          `[bench] round ${r + 1} ${name}: ${Math.round(result.requests / result.durationS)} req/s, non-2xx ${result.non2xx}\n`,
        );
        await deleteKeys(env.redis, `${env.prefix}:*`);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const withM = median(rates['with metrics'] as number[]);
    const without = median(rates['without metrics'] as number[]);
    process.stdout.write(
      `${JSON.stringify({ rates, medianWith: Math.round(withM), medianWithout: Math.round(without), ratio: +(withM / without).toFixed(3) }, null, 2)}\n`,
    );
    for (const s of Object.values(servers)) await stopChild(s.child);
  } finally {
    killAllChildren();
    await env.cleanup();
  }
}

await main();
