/** Which scenarios a bench run measures: `--only a,b` or BENCH_SCENARIOS (BENCH_ONLY) = a,b. */

export const SCENARIOS = {
  floor: 'bare node:http reading, JSON-parsing and answering 202: the floor of single-event ingest',
  trivial: 'trivial Hono route, the baseline of single-event ingest',
  single: 'Tributary single-event ingest, closed loop (wrk)',
  'single-traced': 'Tributary single-event ingest with 1 % of requests traced and exported over OTLP',
  'express-pg': 'peer: Express + pg, one INSERT per request',
  'fastify-pg': 'peer: Fastify + pg, one INSERT per request',
  bullmq: 'peer: Express + BullMQ job per event, a BullMQ worker inserting',
  half: 'Tributary single-event ingest at half the rate single reached, open loop: p99',
  batch: 'Tributary batch ingest, 100 events per request, API only',
  'batch-traced': 'Tributary batch ingest with 1 % of requests traced and exported over OTLP',
  segment: 'Tributary Segment /v1/batch, 100 track calls per request, against native batches of 100',
  'segment-content':
    'native batches of 100 events carrying what the segment calls carry: the cost of the translation alone',
  'express-batch': 'peer: Express batch endpoint, one 100-row INSERT per request',
  plans:
    'tracking plans: batches of 100 events checked against a 20-property schema, against the same batches with no plan, taking turns',
  'live-single':
    'live view: single events with it off, on with no listener, and with one SSE listener, taking turns',
  'live-batch': 'live view: batches of 100 with it off, on with no listener, and with one SSE listener',
  xadd: 'limit: raw pipelined XADD of the same entries into the same streams',
  copy: 'limit: raw COPY of the same rows into the same partitioned table',
  e2e: 'end to end: batch ingest + workers persisting for BENCH_E2E_S, backlog slope',
  'e2e-large':
    'large table: ingest + persist on an empty table and with BENCH_LARGE_ROWS (10M) rows, every GET /v1/events filter timed (~10 min; by name only)',
  parquet:
    'archive: PostgreSQL rows to zstd Parquet by DuckDB, parquet-wasm, hyparquet-writer (~70 s; by name only)',
  'metadata-lz4':
    'metadata compression: bytes per row, insert and read rates of events.metadata with pglz against lz4, on the bench rows and on 4 kB metadata (~30 s; by name only)',
  materialize:
    "materialisations: the feed's cost to ingest (insert with and without it), events/s materialised into the PostgreSQL destination against INSERT … SELECT of the same rows (~1 min; by name only)",
  'source-pg':
    'sources: a PostgreSQL table source reading BENCH_SOURCE_ROWS (500,000) rows into the stream, against COPY … TO STDOUT of the same table (~1 min; by name only)',
} as const;

export type Scenario = keyof typeof SCENARIOS;

const ALL = Object.keys(SCENARIOS) as Scenario[];
/** Scenarios that take long enough (parquet: 70 s and more) to be run only when named. */
const BY_NAME_ONLY: Scenario[] = ['parquet', 'e2e-large', 'source-pg', 'metadata-lz4', 'materialize'];

/** Names that stand for several scenarios. */
export const ALIASES: Record<string, Scenario[]> = {
  all: ALL.filter((s) => !BY_NAME_ONLY.includes(s)),
  peers: ['express-pg', 'fastify-pg', 'bullmq', 'express-batch'],
  limits: ['xadd', 'copy'],
  ingest: ['floor', 'trivial', 'single', 'half', 'batch', 'segment', 'segment-content'],
  traced: ['single', 'single-traced', 'batch', 'batch-traced'],
  live: ['live-single', 'live-batch'],
};

/**
 * The scenarios named in `list` (comma-separated; empty: all), plus those they need a
 * measured rate from: half needs single's rate unless BENCH_HALF_RATE is set, e2e needs
 * the COPY rate unless BENCH_E2E_RATE is set. Throws on an unknown name.
 */
export function selectScenarios(list: string, env: NodeJS.ProcessEnv = process.env): Set<Scenario> {
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const picked = new Set<Scenario>();
  for (const name of names.length > 0 ? names : ['all']) {
    const expanded = ALIASES[name] ?? (name in SCENARIOS ? [name as Scenario] : undefined);
    if (!expanded) {
      throw new Error(
        `unknown scenario "${name}"; scenarios: ${ALL.join(', ')}; aliases: ${Object.keys(ALIASES).join(', ')}`,
      );
    }
    for (const s of expanded) picked.add(s);
  }
  if (picked.has('half') && !env.BENCH_HALF_RATE) picked.add('single');
  // The Segment rate is reported as a ratio of the native batch rate, measured in the same rounds.
  if (picked.has('segment')) {
    picked.add('batch');
    picked.add('segment-content');
  }
  if (picked.has('e2e') && !env.BENCH_E2E_RATE) picked.add('copy');
  // A traced run is reported as a ratio of the untraced one, measured in the same rounds.
  if (picked.has('single-traced')) picked.add('single');
  if (picked.has('batch-traced')) picked.add('batch');
  return picked;
}

/** The help text of the filter. */
export function scenarioHelp(): string {
  const width = Math.max(...ALL.map((s) => s.length));
  return [
    'npm run bench [-- --only SCENARIO,...]   (or BENCH_SCENARIOS=SCENARIO,...)',
    ...ALL.map((s) => `  ${s.padEnd(width)}  ${SCENARIOS[s]}`),
    ...Object.entries(ALIASES)
      .filter(([a]) => a !== 'all')
      .map(([a, list]) => `  ${a.padEnd(width)}  = ${list.join(',')}`),
  ].join('\n');
}
