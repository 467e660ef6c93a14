/**
 * What the live view costs ingest (ARCHITECTURE §13, "nothing measurable when nobody
 * listens"): single events and batches of 100 against three servers' states, taking turns
 * in rounds (A B C, C B A) so machine noise hits each alike:
 *   off   a `serve` with LIVE_MAX_EVENTS_PER_S=0: no presence polling, nothing published
 *   none  the usual `serve`, live view on, nobody listening
 *   one   the same `serve` with one SSE listener connected for the run, reading and
 *         discarding every frame (its process reads the whole live stream for it)
 * Reported with the ratios none/off and one/none (targets: ≥ 0.98 and ≥ 0.90).
 */
import { ADMIN_KEY } from '../helpers/env.ts';
import { type ServerChild, stopChild } from './children.ts';
import { bufferCheck, type Contender, contender, measureWrk, warmUp } from './ingest.ts';
import { type BenchContext, dropStreams, interleave, log, ratios, SETTINGS, settle } from './measure.ts';
import type { Scenario } from './scenarios.ts';

/** One SSE listener, reading and discarding, as a browser tab left open would. */
interface Listener {
  /** Outcome frames received so far. */
  frames(): number;
  close(): Promise<void>;
}

const OUTCOME = Buffer.from('event: outcome\n');

async function connectListener(url: string): Promise<Listener> {
  const abort = new AbortController();
  const res = await fetch(`${url}/v1/events/live`, {
    headers: { authorization: `Bearer ${ADMIN_KEY}` },
    signal: abort.signal,
  });
  if (res.status !== 200 || !res.body) throw new Error(`live view: ${res.status} ${await res.text()}`);
  const reader = res.body.getReader();
  // The `ready` frame: the listener is registered before the load starts.
  const first = await reader.read();
  if (first.done) throw new Error('live view: the stream ended at once');
  let frames = 0;
  const reading = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        // Frames are written whole, one per chunk or several: count each start.
        const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
        for (let at = bytes.indexOf(OUTCOME); at !== -1; at = bytes.indexOf(OUTCOME, at + 1)) frames++;
      }
    } catch {
      // Aborted by close().
    }
  })();
  return {
    frames: () => frames,
    close: async () => {
      abort.abort();
      await reading;
    },
  };
}

const SHAPES: { scenario: Scenario; what: string; path: string; batch: number; connections: number }[] = [
  {
    scenario: 'live-single',
    what: 'single',
    path: '/v1/events',
    batch: 0,
    connections: SETTINGS.singleConnections,
  },
  {
    scenario: 'live-batch',
    what: 'batch of 100',
    path: '/v1/events/batch',
    batch: SETTINGS.batchSize,
    connections: SETTINGS.batchConnections,
  },
];

export async function liveOverhead(ctx: BenchContext): Promise<void> {
  const shapes = SHAPES.filter((s) => ctx.picked.has(s.scenario));
  if (shapes.length === 0) return;
  const on = await ctx.serve();
  const off: ServerChild = await ctx.startServe({ LIVE_MAX_EVENTS_PER_S: '0' });
  const apiKey = await ctx.ingestKey();
  const liveStream = `${ctx.env.prefix}:live`;
  try {
    for (const shape of shapes) await measureShape(ctx, shape, on, off, liveStream, apiKey);
  } finally {
    await stopChild(off.child);
  }
}

async function measureShape(
  ctx: BenchContext,
  shape: (typeof SHAPES)[number],
  on: ServerChild,
  off: ServerChild,
  liveStream: string,
  apiKey: string,
): Promise<void> {
  const inFlight = shape.connections * Math.max(1, shape.batch);
  const side = (server: ServerChild, state: string): Contender => {
    const name = `Tributary ${shape.what}, live view ${state}`;
    return contender({
      scenario: shape.scenario,
      name,
      server,
      path: shape.path,
      batch: shape.batch,
      apiKey,
      after: bufferCheck(ctx, name, inFlight),
    });
  };
  const sides = {
    off: side(off, 'off'),
    none: side(on, 'on, no listener'),
    one: side(on, 'on, one listener'),
  };
  let frames = 0;
  const run = (c: Contender, listen: boolean) => async () => {
    const listener = listen ? await connectListener(on.url) : undefined;
    let answered = 0;
    try {
      answered = await measureWrk(c, shape.connections);
    } finally {
      await settle();
      frames += listener?.frames() ?? 0;
      await listener?.close();
    }
    await c.after?.(answered);
    // What the listener's runs left in Redis goes, as the buffer's streams do.
    await ctx.env.redis.del(liveStream);
  };

  log(`${shape.scenario}: warm-up, 2 s each`);
  await warmUp([sides.off, sides.none], shape.connections);
  const warm = await connectListener(on.url);
  await warmUp([sides.one], shape.connections);
  await warm.close();
  await settle();
  await dropStreams(ctx.env);
  await ctx.env.redis.del(liveStream);

  await interleave([
    { name: sides.off.name, run: run(sides.off, false) },
    { name: sides.none.name, run: run(sides.none, false) },
    { name: sides.one.name, run: run(sides.one, true) },
  ]);
  const rows = {
    off: sides.off.tally.row(sides.off.name, ['server']),
    none: sides.none.tally.row(sides.none.name, ['server']),
    one: sides.one.tally.row(sides.one.name, ['server']),
  };
  rows.none.ratios = ratios(rows.none, { off: rows.off });
  rows.one.ratios = ratios(rows.one, { 'no listener': rows.none, off: rows.off });
  rows.one.note = `${frames} outcome frames reached the listener (LIVE_MAX_EVENTS_PER_S per second at most)`;
  ctx.report.rows.push(rows.off, rows.none, rows.one);
  ctx.report.checks[`${shape.scenario}: no listener / off`] = rows.none.ratios.off ?? 0;
  ctx.report.checks[`${shape.scenario}: one listener / no listener`] = rows.one.ratios['no listener'] ?? 0;
}
