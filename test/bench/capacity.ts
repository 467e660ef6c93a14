/**
 * The figures of the README's capacity model (Scaling out), as CPU time per event, which holds
 * on a machine where the load generator, Redis, PostgreSQL and Tributary share the cores:
 *
 *   node test/bench/capacity.ts [--events 400000] [--workers 1,2]   (npm run bench:capacity)
 *
 * On a private redis-server (AOF everysec, as in production) and a private database on the
 * machine's PostgreSQL:
 * 1. `serve` alone takes single events (32 in flight) and batches of 100 (8 in flight):
 *    events per CPU-second of the API process, and of Redis (INFO cpu);
 * 2. Redis memory per buffered event: INFO used_memory before and after the first 100,000
 *    (no worker runs), and MEMORY USAGE of the streams alone (the rest is the dedupe ids);
 * 3. for each worker count: `--events` buffered with no worker, then the workers start; the
 *    time until the buffer is empty gives rows/s into PostgreSQL, the CPU time of the
 *    workers and of their PostgreSQL backends (by application_name) per row, the WAL written
 *    per row and the table's size per row (indexes included).
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { ADMIN_KEY, createTestEnv } from '../helpers/env.ts';
import { freePort, PrivateRedis } from '../helpers/private-servers.ts';
import { startTributary, type TributaryProcess } from '../helpers/processes.ts';
import { batchJson, eventJson } from './payload.ts';
import { cpuSeconds } from './proc.ts';
import { runCli } from './tributary-proc.ts';

const { values } = parseArgs({
  options: { events: { type: 'string', default: '400000' }, workers: { type: 'string', default: '1,2' } },
});
const EVENTS = Number(values.events);
const WORKER_COUNTS = (values.workers ?? '1').split(',').map(Number);
const PARTITIONS = 8;
const log = (msg: string) => process.stderr.write(`[capacity] ${msg}\n`);
const round = (n: number, digits = 0) => Math.round(n * 10 ** digits) / 10 ** digits;

const redisServer = new PrivateRedis(await freePort());
const db = createTestEnv();
const prefix = db.prefix;
const env = db.env({
  REDIS_URL: redisServer.url,
  RETENTION_SCHEDULE: 'off',
  BUFFER_MAX_EVENTS: String(EVENTS * 2),
});

async function redisInfo(redis: Redis, section: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await redis.info(section)).split('\r\n')) {
    const [k, v] = line.split(':');
    if (k && v !== undefined && Number.isFinite(Number(v))) out[k] = Number(v);
  }
  return out;
}
const redisCpu = async (redis: Redis) => {
  const cpu = await redisInfo(redis, 'cpu');
  return (cpu.used_cpu_user ?? 0) + (cpu.used_cpu_sys ?? 0);
};
const backlog = async (redis: Redis) => {
  let n = 0;
  for (let p = 0; p < PARTITIONS; p++) n += await redis.xlen(`${prefix}:events:{${p}}`);
  return n;
};

/** Sends `total` events as `body()` requests, `inFlight` at a time; returns the seconds taken. */
async function send(
  url: string,
  path: string,
  total: number,
  perRequest: number,
  inFlight: number,
  body: () => string,
) {
  let left = Math.ceil(total / perRequest);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (left-- > 0) {
        const res = await fetch(`${url}${path}`, {
          method: 'POST',
          headers: { 'x-api-key': ADMIN_KEY, 'content-type': 'application/json' },
          body: body(),
        });
        if (res.status !== 202) throw new Error(`${path}: ${res.status} ${await res.text()}`);
        await res.arrayBuffer();
      }
    }),
  );
  return (performance.now() - started) / 1000;
}

/** Events per CPU-second of the API and of Redis while `serve` takes `total` events. */
async function apiRun(
  api: TributaryProcess,
  redis: Redis,
  what: string,
  run: () => Promise<number>,
  total: number,
) {
  const pid = api.child.pid as number;
  const [api0, redis0] = [cpuSeconds(pid), await redisCpu(redis)];
  const seconds = await run();
  const [api1, redis1] = [cpuSeconds(pid), await redisCpu(redis)];
  const row = {
    events: total,
    seconds: round(seconds, 1),
    eventsPerSecond: round(total / seconds),
    apiCpuSeconds: round(api1 - api0, 2),
    eventsPerApiCpuSecond: round(total / (api1 - api0)),
    eventsPerRedisCpuSecond: round(total / (redis1 - redis0)),
  };
  log(`${what}: ${JSON.stringify(row)}`);
  return row;
}

/** Buffers `events` with no worker, then drains them with `count` workers. */
async function drain(api: TributaryProcess, redis: Redis, client: pg.Client, count: number) {
  await client.query('TRUNCATE events');
  await send(api.url, '/v1/events/batch', EVENTS, 100, 8, () => batchJson(100));
  const buffered = await backlog(redis);
  log(`drain with ${count} worker(s): ${buffered} buffered`);
  const redis0 = await redisCpu(redis);
  const wal0 = (await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]?.lsn;
  const started = performance.now();
  const workers = await Promise.all(Array.from({ length: count }, () => startTributary('work', env)));
  const cpu0 = workers.map((w) => cpuSeconds(w.child.pid as number));
  while ((await backlog(redis)) > 0) await new Promise((r) => setTimeout(r, 50));
  const seconds = (performance.now() - started) / 1000;
  const workerCpu = workers.reduce((s, w, i) => s + cpuSeconds(w.child.pid as number) - (cpu0[i] ?? 0), 0);
  const redisCpuS = (await redisCpu(redis)) - redis0;
  const backends = await client.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tributary-work'`,
  );
  const pgCpu = backends.rows.reduce((s, r) => s + cpuSeconds(r.pid), 0);
  // The WAL of the whole server: other databases' writes meanwhile count too (run it on a quiet machine).
  const wal = await client.query<{ bytes: string }>(
    'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint::text AS bytes',
    [wal0],
  );
  const size = await client.query<{ bytes: string }>(
    `SELECT sum(pg_total_relation_size(i.inhrelid))::bigint::text AS bytes
       FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'`,
  );
  const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM events');
  await Promise.all(workers.map((w) => w.stop()));
  const row = {
    workers: count,
    rows: rows[0]?.n,
    seconds: round(seconds, 1),
    rowsPerSecond: round(buffered / seconds),
    workerCpuSeconds: round(workerCpu, 2),
    rowsPerWorkerCpuSecond: round(buffered / workerCpu),
    rowsPerPostgresBackendCpuSecond: round(buffered / pgCpu),
    rowsPerRedisCpuSecond: round(buffered / redisCpuS),
    walBytesPerRow: round(Number(wal.rows[0]?.bytes) / buffered),
    tableBytesPerRow: round(Number(size.rows[0]?.bytes) / buffered),
  };
  log(`drain: ${JSON.stringify(row)}`);
  return row;
}

async function main(): Promise<void> {
  redisServer.start();
  const redis = new Redis(redisServer.url);
  await runCli(['migrate'], env);
  const client = new pg.Client({ connectionString: db.databaseUrl });
  await client.connect();
  const api = await startTributary('serve', env);
  try {
    // Warm-up: JIT and connections, not measured.
    await send(api.url, '/v1/events/batch', 20_000, 100, 8, () => batchJson(100));
    await send(api.url, '/v1/events', 2_000, 1, 32, eventJson);
    await redis.del(...(await redis.keys(`${prefix}:*`)));

    const memory0 = (await redisInfo(redis, 'memory')).used_memory ?? 0;
    const batch = await apiRun(
      api,
      redis,
      'batches of 100',
      () => send(api.url, '/v1/events/batch', 100_000, 100, 8, () => batchJson(100)),
      100_000,
    );
    const memory1 = (await redisInfo(redis, 'memory')).used_memory ?? 0;
    let streamBytes = 0;
    for (let p = 0; p < PARTITIONS; p++) {
      streamBytes += Number(await redis.call('MEMORY', 'USAGE', `${prefix}:events:{${p}}`, 'SAMPLES', '0'));
    }
    const buffered = await backlog(redis);
    const memory = {
      buffered,
      bytesPerEvent: round((memory1 - memory0) / buffered),
      streamBytesPerEvent: round(streamBytes / buffered),
      eventJsonBytes: eventJson().length,
    };
    log(`redis memory: ${JSON.stringify(memory)}`);
    const single = await apiRun(
      api,
      redis,
      'single events',
      () => send(api.url, '/v1/events', 30_000, 1, 32, eventJson),
      30_000,
    );
    await redis.del(...(await redis.keys(`${prefix}:*`)));

    const drains = [];
    for (const count of WORKER_COUNTS) drains.push(await drain(api, redis, client, count));
    process.stdout.write(`${JSON.stringify({ single, batch, memory, drains }, null, 2)}\n`);
  } finally {
    await api.kill9();
    await client.end();
    redis.disconnect();
    redisServer.destroy();
    await db.cleanup();
  }
}

await main();
