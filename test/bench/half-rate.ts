/** Tributary single events at half the rate it reached closed loop, open loop, beside a control. */
import { startTrivial, stopChild } from './children.ts';
import {
  type BenchContext,
  dropStreams,
  envNumber,
  interleave,
  log,
  SETTINGS,
  settle,
  Tally,
} from './measure.ts';
import { runOpenLoop } from './open-loop.ts';

/**
 * Tributary single events at a fixed rate, open loop: the latency an operator sees below
 * saturation. The trivial route at the same rate, taking turns with it, is the control: the
 * latency the client, the kernel and the machine's noise add on their own.
 */
export async function halfRate(ctx: BenchContext, singleRate: number): Promise<void> {
  const serve = await ctx.serve();
  const apiKey = await ctx.ingestKey();
  const trivial = ctx.picked.has('trivial') ? await startTrivial() : undefined;
  const rate = Math.max(100, Math.round(envNumber('BENCH_HALF_RATE', singleRate / 2)));
  log(`half rate: ${rate} events/s open loop`);
  const sides = [
    { name: 'Tributary', server: serve },
    ...(trivial ? [{ name: 'trivial route', server: trivial }] : []),
  ].map((side) => ({
    ...side,
    tally: new Tally({ server: side.server.pid, client: 0 }),
    unsent: 0,
    lag: 0,
    max: 0,
  }));
  await interleave(
    sides.map((side) => ({
      name: `${side.name} at ${rate}/s`,
      run: async () => {
        side.tally.meter.start();
        const r = await runOpenLoop(
          {
            url: side.server.url,
            path: '/v1/events',
            batch: 0,
            rate,
            connections: SETTINGS.singleConnections,
            durationS: SETTINGS.roundS,
            apiKey,
          },
          (pid) => side.tally.meter.setPid('client', pid),
        );
        side.tally.meter.stop();
        side.tally.add(r.status2xx, r.durationS, r.non2xx + r.errors);
        side.tally.latencies.push(...r.latenciesMs);
        side.unsent += r.unsent;
        side.lag = Math.max(side.lag, r.sendLagP99Ms);
        side.max = Math.max(side.max, r.maxMs);
      },
    })),
  );
  for (const side of sides) {
    const control = side.server !== serve;
    const row = side.tally.row(
      control
        ? `trivial route at ${rate}/s (open loop, control)`
        : `Tributary single at ${rate}/s (half rate, open loop)`,
      ['server'],
    );
    row.note = `${control ? 'latency of client + machine alone' : 'p99 target ≤ 10 ms'}; max ${side.max} ms; client send lag p99 ${side.lag} ms${side.unsent ? `; ${side.unsent} requests unsent (server behind)` : ''}`;
    ctx.report.rows.push(row);
  }
  if (trivial) await stopChild(trivial.child);
  await settle();
  await dropStreams(ctx.env);
}
