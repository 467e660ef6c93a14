/**
 * The closed-loop ingest scenarios (wrk): single events (trivial route, Tributary, the
 * single-event peers) and batches of 100 (Tributary, the batch peer, raw XADD).
 * Contenders of one group take turns in rounds, the order reversed every other round
 * (A B C, C B A), so machine noise hits every side alike.
 */
import { fileURLToPath } from 'node:url';
import { ADMIN_KEY, deleteKeys } from '../helpers/env.ts';
import { type ServerChild, startScript, startTrivial, stopChild } from './children.ts';
import { createIngestKey } from './deployed.ts';
import {
  type BenchContext,
  countRows,
  dropStreams,
  interleave,
  log,
  ratios,
  round,
  rowsSettled,
  runLimit,
  SETTINGS,
  settle,
  streamEntries,
  Tally,
} from './measure.ts';
import type { BenchRow } from './report.ts';
import type { Scenario } from './scenarios.ts';
import { runWrk, type WrkSpec } from './wrk.ts';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

/** One side of a closed-loop comparison, driven by wrk. */
export interface Contender {
  scenario: Scenario;
  name: string;
  server: ServerChild;
  path: string;
  /** Events per request; 0 = one event, not wrapped in a batch. */
  batch: number;
  /** Segment batches (with `authorization`, a write key), or native events with their content. */
  format?: 'segment' | 'native-rich' | 'plans';
  /** The service of every event (`plans`). */
  service?: string;
  /** The `x-api-key` sent (native formats); Tributary's deployed key, else the bootstrap key. */
  apiKey?: string;
  authorization?: string;
  /** Processes whose CPU and RSS count for it (besides `server`). */
  extraPids?: Record<string, number>;
  tally: Tally;
  /** Runs after each measured window. */
  after?: (answered: number) => Promise<void>;
}

export function contender(c: Omit<Contender, 'tally'>): Contender {
  return { ...c, tally: new Tally({ server: c.server.pid, ...c.extraPids, client: 0 }) };
}

export async function measureWrk(
  c: Contender,
  connections: number,
  durationS = SETTINGS.roundS,
): Promise<number> {
  c.tally.meter.start();
  try {
    const result = await runWrk(
      {
        url: c.server.url,
        path: c.path,
        batch: c.batch,
        connections,
        threads: 1,
        durationS,
        ...credentials(c),
      },
      (pid) => c.tally.meter.setPid('client', pid),
    );
    const events = (result.requests - result.non2xx) * Math.max(1, c.batch);
    c.tally.add(events, result.durationS, result.non2xx + result.socketErrors, result.p50Ms, result.p99Ms);
    return events;
  } finally {
    c.tally.meter.stop();
  }
}

/** How a contender's requests authenticate and what they carry. */
function credentials(c: Contender): Pick<WrkSpec, 'apiKey' | 'format' | 'authorization' | 'service'> {
  return c.format === 'segment'
    ? { format: 'segment', authorization: c.authorization ?? '' }
    : {
        apiKey: c.apiKey ?? ADMIN_KEY,
        ...(c.format ? { format: c.format } : {}),
        ...(c.service ? { service: c.service } : {}),
      };
}

/**
 * A Segment write key: a deployed key (rate limit and all) bound to one service (the Segment
 * routes store calls under the key's first service), as the Authorization header the SDKs send.
 */
async function segmentWriteKey(server: ServerChild): Promise<string> {
  const key = await createIngestKey(server, 'bench-segment', ['web-shop']);
  return `Basic ${Buffer.from(`${key}:`).toString('base64')}`;
}

/** A short unmeasured run of each contender (JIT, connection pools, partitions). */
export async function warmUp(contenders: Contender[], connections: number): Promise<void> {
  for (const c of contenders) {
    await runWrk({
      url: c.server.url,
      path: c.path,
      batch: c.batch,
      connections,
      threads: 1,
      durationS: 2,
      ...credentials(c),
    });
  }
}

/** Checks that Tributary's buffer holds what it answered 202 for (± requests in flight), then empties it. */
export function bufferCheck(ctx: BenchContext, name: string, inFlight: number) {
  return async (answered: number) => {
    await settle();
    const entries = await streamEntries(ctx.env);
    if (entries < answered || entries > answered + inFlight) {
      ctx.report.anomalies.push(
        `${name}: buffer holds ${entries} entries for ${answered} events answered 202 (+${inFlight} in flight)`,
      );
    }
    const key = `${name}: events answered 202 / stream entries`;
    const [a, e] = String(ctx.report.checks[key] ?? '0 / 0')
      .split(' / ')
      .map(Number);
    ctx.report.checks[key] = `${(a ?? 0) + answered} / ${(e ?? 0) + entries}`;
    await dropStreams(ctx.env);
  };
}

/** Closed-loop single-event runs; returns Tributary's rate (0 when not measured). */
export async function singleEvents(ctx: BenchContext): Promise<number> {
  const { picked, peerEnv, env } = ctx;
  const started: ServerChild[] = [];
  const script = async (file: string) => {
    const s = await startScript(here(file), peerEnv);
    started.push(s);
    return s;
  };
  const contenders: Contender[] = [];
  const path = '/v1/events';
  if (picked.has('floor')) {
    const server = await script('./floor-server.ts');
    contenders.push(
      contender({
        scenario: 'floor',
        name: 'bare node:http, JSON.parse, 202 (floor)',
        server,
        path,
        batch: 0,
      }),
    );
  }
  if (picked.has('trivial')) {
    const server = await startTrivial();
    started.push(server);
    contenders.push(
      contender({ scenario: 'trivial', name: 'trivial Hono route (baseline)', server, path, batch: 0 }),
    );
  }
  const apiKey = picked.has('single') ? await ctx.ingestKey() : undefined;
  if (picked.has('single')) {
    const name = 'Tributary single';
    const after = bufferCheck(ctx, name, SETTINGS.singleConnections);
    contenders.push(
      contender({ scenario: 'single', name, server: await ctx.serve(), path, batch: 0, apiKey, after }),
    );
  }
  if (picked.has('single-traced')) {
    const name = 'Tributary single, 1 % traced';
    const after = bufferCheck(ctx, name, SETTINGS.singleConnections);
    const server = await ctx.serveTraced();
    contenders.push(contender({ scenario: 'single-traced', name, server, path, batch: 0, apiKey, after }));
  }
  if (picked.has('express-pg')) {
    const server = await script('./peers/express-pg.ts');
    contenders.push(contender({ scenario: 'express-pg', name: 'Express + pg', server, path, batch: 0 }));
  }
  if (picked.has('fastify-pg')) {
    const server = await script('./peers/fastify-pg.ts');
    contenders.push(contender({ scenario: 'fastify-pg', name: 'Fastify + pg', server, path, batch: 0 }));
  }
  const landed = { rows: 0, seconds: 0 };
  if (picked.has('bullmq')) {
    const server = await script('./peers/express-bullmq.ts');
    const worker = await script('./peers/bullmq-worker.ts');
    const extraPids = { worker: worker.pid };
    contenders.push(
      contender({ scenario: 'bullmq', name: 'Express + BullMQ', server, path, batch: 0, extraPids }),
    );
  }
  if (contenders.length === 0) return 0;

  log('single events: warm-up, 2 s each');
  await warmUp(contenders, 10);
  await settle();
  await dropStreams(env);
  await rowsSettled(env);
  await interleave(
    contenders.map((c) => ({
      name: c.name,
      run: async () => {
        const start =
          c.scenario === 'bullmq' ? { t: performance.now(), rows: await countRows(env) } : undefined;
        const answered = await measureWrk(c, SETTINGS.singleConnections);
        if (start) {
          // Landed: rows its worker inserted from the start of the run until the queue was
          // empty, over that time. Nothing else is measured while it drains.
          const drained = await rowsSettled(env);
          landed.rows += drained.rows - start.rows;
          landed.seconds += (drained.at - start.t) / 1000;
        }
        await c.after?.(answered);
      },
    })),
  );
  const rows = new Map<Scenario, BenchRow>();
  for (const c of contenders) {
    const servers = c.extraPids ? ['server', ...Object.keys(c.extraPids)] : ['server'];
    rows.set(c.scenario, c.tally.row(c.name, servers));
  }
  const tributary = rows.get('single');
  if (tributary) {
    tributary.ratios = ratios(tributary, {
      floor: rows.get('floor'),
      trivial: rows.get('trivial'),
      'Express+pg': rows.get('express-pg'),
      'Fastify+pg': rows.get('fastify-pg'),
      'Express+BullMQ': rows.get('bullmq'),
    });
  }
  const singleTraced = rows.get('single-traced');
  if (singleTraced)
    singleTraced.ratios = ratios(singleTraced, { untraced: tributary, floor: rows.get('floor') });
  for (const [scenario, row] of rows) {
    ctx.report.rows.push(row);
    if (scenario !== 'bullmq') continue;
    row.note = 'accepted (job in Redis); RSS and CPU: API + worker';
    ctx.report.rows.push({
      ...row,
      scenario: 'Express + BullMQ: worker landed',
      events: landed.rows,
      durationS: round(landed.seconds, 2),
      eventsPerSec: round(landed.seconds > 0 ? landed.rows / landed.seconds : 0),
      p50Ms: null,
      p99Ms: null,
      failures: null,
      peakRssMb: null,
      cpuPercent: null,
      cpuUsPerEvent: null,
      clientCpuPercent: null,
      redisCpuPercent: null,
      hostCpuPercent: null,
      ratios: {},
      note: 'rows inserted from the start of each run until the queue was empty, over that time',
    });
  }
  for (const s of started) await stopChild(s.child);
  if (picked.has('bullmq')) await deleteKeys(env.redis, `${peerEnv.BULLMQ_PREFIX}:*`);
  return contenders.find((c) => c.scenario === 'single')?.tally.rate ?? 0;
}

/**
 * Batches of 100: Tributary (API only), Tributary's Segment-compatible /v1/batch (100 track calls
 * as analytics-node sends them), the Express batch peer and raw XADD, interleaved.
 */
export async function batches(ctx: BenchContext): Promise<void> {
  const { picked, env } = ctx;
  const path = '/v1/events/batch';
  const batch = SETTINGS.batchSize;
  const contenders: Contender[] = [];
  const apiKey = picked.has('batch') || picked.has('segment-content') ? await ctx.ingestKey() : undefined;
  const inFlight = SETTINGS.batchConnections * batch;
  if (picked.has('batch')) {
    const name = 'Tributary batch of 100';
    const after = bufferCheck(ctx, name, inFlight);
    contenders.push(
      contender({ scenario: 'batch', name, server: await ctx.serve(), path, batch, apiKey, after }),
    );
  }
  if (picked.has('batch-traced')) {
    const name = 'Tributary batch of 100, 1 % traced';
    const after = bufferCheck(ctx, name, inFlight);
    const server = await ctx.serveTraced();
    contenders.push(contender({ scenario: 'batch-traced', name, server, path, batch, apiKey, after }));
  }
  if (picked.has('segment-content')) {
    const name = 'Tributary batch of 100, Segment content';
    contenders.push(
      contender({
        scenario: 'segment-content',
        name,
        server: await ctx.serve(),
        path,
        batch,
        format: 'native-rich',
        apiKey,
        after: bufferCheck(ctx, name, inFlight),
      }),
    );
  }
  if (picked.has('segment')) {
    const name = 'Tributary Segment batch of 100';
    const server = await ctx.serve();
    contenders.push(
      contender({
        scenario: 'segment',
        name,
        server,
        path: '/v1/batch',
        batch,
        format: 'segment',
        authorization: await segmentWriteKey(server),
        after: bufferCheck(ctx, name, inFlight),
      }),
    );
  }
  let peer: ServerChild | undefined;
  if (picked.has('express-batch')) {
    peer = await startScript(here('./peers/express-batch.ts'), ctx.peerEnv);
    contenders.push(
      contender({ scenario: 'express-batch', name: 'Express batch INSERT', server: peer, path, batch }),
    );
  }
  const xadd = new Tally({ server: 0 });
  const steps = contenders.map((c) => ({
    name: c.name,
    run: async () => {
      const answered = await measureWrk(c, SETTINGS.batchConnections);
      await c.after?.(answered);
    },
  }));
  if (picked.has('xadd')) {
    steps.push({
      name: 'raw XADD',
      run: async () => {
        // The very streams Tributary writes to (emptied after each run, as after Tributary's).
        await runLimit(
          here('./limits/xadd.ts'),
          { REDIS_URL: env.redisUrl, PREFIX: env.prefix, SECONDS: String(SETTINGS.roundS) },
          xadd,
        );
        await dropStreams(env);
      },
    });
  }
  if (steps.length === 0) return;
  if (contenders.length > 0) {
    log('batches: warm-up, 2 s each');
    await warmUp(contenders, SETTINGS.batchConnections);
    await settle();
    await dropStreams(env);
  }
  await interleave(steps);
  const rows = new Map<Scenario, BenchRow>();
  for (const c of contenders) rows.set(c.scenario, c.tally.row(c.name, ['server']));
  if (picked.has('xadd'))
    rows.set(
      'xadd',
      xadd.row('limit: raw XADD, 4 pipelines of 100 in flight', ['server'], { latency: false }),
    );
  const tributary = rows.get('batch');
  if (tributary) {
    tributary.ratios = ratios(tributary, {
      'raw XADD': rows.get('xadd'),
      'Express batch': rows.get('express-batch'),
    });
  }
  const batchTraced = rows.get('batch-traced');
  if (batchTraced)
    batchTraced.ratios = ratios(batchTraced, { untraced: tributary, 'raw XADD': rows.get('xadd') });
  const segment = rows.get('segment');
  if (segment)
    segment.ratios = ratios(segment, {
      'native batch': tributary,
      'native, same content': rows.get('segment-content'),
    });
  ctx.report.rows.push(...rows.values());
  if (peer) await stopChild(peer.child);
}
