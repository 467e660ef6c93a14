import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, createTestEnv, type TestEnv } from '../helpers/env.ts';
import { documentedFetch } from '../helpers/openapi.ts';
import { freePort } from '../helpers/private-servers.ts';
import { runTributary, startTributary, type TributaryProcess } from '../helpers/processes.ts';
import { call, event, waitFor } from '../helpers/stack.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROMETHEUS_DIR = join(ROOT, 'ops/prometheus');
const DASHBOARDS_DIR = join(ROOT, 'grafana/dashboards');

let env: TestEnv;
let api: TributaryProcess;
let worker: TributaryProcess;
let workerMetricsUrl: string;

beforeAll(async () => {
  env = createTestEnv();
  expect((await runTributary(['migrate'], env.env())).code).toBe(0);
  api = await startTributary('serve', env.env());
  worker = await startTributary('work', env.env({ METRICS_PORT: '0' }));
  const started = await worker.waitForLog((l) => l.msg === 'worker started');
  workerMetricsUrl = `http://127.0.0.1:${started.metricsPort}/metrics`;

  // Traffic that touches every outcome: accepted, duplicate, rejected, persisted.
  const batch = Array.from({ length: 20 }, () => event());
  await call(api.url, '/v1/events/batch', { body: { events: [...batch, { service: 'x' }] } });
  await call(api.url, '/v1/events', { body: batch[0] });
  await waitFor(
    async () => (await env.pool.query('SELECT 1 FROM events')).rowCount === 20,
    20_000,
    'the rows',
  );
});
afterAll(async () => {
  await Promise.all([api, worker].map((p) => p?.kill9()));
  await env?.cleanup();
});

/** Metric families a /metrics text declares. */
const families = (text: string) => new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] as string));

/** Every `tributary_…` name the alert rules and dashboards use, histogram suffixes removed. */
function referencedMetrics(): Set<string> {
  const files = [
    ...readdirSync(PROMETHEUS_DIR)
      .filter((f) => f.endsWith('.yml') && !f.endsWith('.test.yml'))
      .map((f) => join(PROMETHEUS_DIR, f)),
    ...readdirSync(DASHBOARDS_DIR).map((f) => join(DASHBOARDS_DIR, f)),
  ];
  const names = new Set<string>();
  for (const file of files) {
    for (const m of readFileSync(file, 'utf8').matchAll(/\btributary_[a-z0-9_]+/g)) {
      names.add(m[0].replace(/_(bucket|sum|count)$/, ''));
    }
  }
  return names;
}

describe('metrics, alert rules and dashboards agree', () => {
  it('every metric the dashboards and alert rules use is exported by the API or the worker', async () => {
    const apiText = await (await documentedFetch(`${api.url}/metrics`)).text();
    const workerText = await (await fetch(workerMetricsUrl)).text();
    const exported = new Set([...families(apiText), ...families(workerText)]);
    const referenced = referencedMetrics();
    expect(referenced.size).toBeGreaterThan(15);
    expect([...referenced].filter((name) => !exported.has(name))).toEqual([]);
    // HELP on every family, and no label per event or per user.
    for (const text of [apiText, workerText]) {
      for (const name of families(text)) expect(text).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'));
      expect(text).not.toMatch(/(user_?id|event_?id|request_?id)="/i);
    }
    expect(workerText).toMatch(/^tributary_batch_size_count [1-9]/m);
    expect(apiText).toMatch(/^tributary_events_duplicate_total 1$/m);
  });

  it('the API reports the live workers and the count to scale them to', async () => {
    // Sampled every 5 s: one worker runs and the buffer is drained, so one is enough.
    const text = await waitFor(async () => {
      const t = await (await documentedFetch(`${api.url}/metrics`)).text();
      return /^tributary_workers_live 1$/m.test(t) ? t : undefined;
    }, 15_000);
    expect(text).toMatch(/^tributary_workers_recommended 1$/m);
  });

  it('promtool accepts the Prometheus config and rules, and the rule unit tests pass', () => {
    const run = (...args: string[]) =>
      execFileSync('promtool', args, { cwd: PROMETHEUS_DIR, encoding: 'utf8' });
    expect(run('check', 'config', 'prometheus.yml')).toContain('SUCCESS');
    expect(run('check', 'rules', 'alerts.yml')).toContain('SUCCESS');
    expect(run('test', 'rules', 'alerts.test.yml')).toContain('SUCCESS');
  });
});

describe('/health/business', () => {
  it('reports events by service, the hourly trend and top services, recomputed at most once a minute', async () => {
    const first = await call(api.url, '/health/business');
    expect(first.status).toBe(200);
    expect(first.body.total).toBeGreaterThanOrEqual(20);
    expect(first.body.byService[0]).toMatchObject({ service: 'checkout' });
    expect(first.body.topServices[0]).toMatchObject({ service: 'checkout', share: 1 });
    const thisHour = `${new Date().toISOString().slice(0, 13)}:00:00.000Z`;
    const hourly = first.body.hourly as { hour: string; events: number }[];
    expect(hourly.reduce((a, h) => a + h.events, 0)).toBe(first.body.total);
    expect(hourly.some((h) => h.hour === thisHour || h.hour < thisHour)).toBe(true);
    await call(api.url, '/v1/events', { body: event({ service: 'billing' }) });
    const second = await call(api.url, '/health/business');
    expect(second.body.computedAt).toBe(first.body.computedAt);
  });
});

describe('logs', () => {
  it('never hold an API key, whichever way it was sent or made', async () => {
    const created = await call(api.url, '/v1/admin/keys', {
      body: { name: 'log-check', scopes: ['ingest'] },
    });
    expect(created.status).toBe(201);
    const key = created.body.key as string;
    await call(api.url, '/v1/events', { body: event(), key });
    await call(api.url, '/v1/events', {
      body: event(),
      key: null,
      headers: { authorization: `Bearer ${key}` },
    });
    await call(api.url, '/v1/events', { body: event(), key: `${key}x` }); // a wrong key is not logged either
    await call(api.url, `/v1/admin/keys/${created.body.id}`, { method: 'DELETE' });
    await api.waitForLog((l) => l.msg === 'request' && l.method === 'DELETE');
    const text = `${JSON.stringify(api.logs)}${JSON.stringify(worker.logs)}`;
    expect(api.logs.filter((l) => l.msg === 'request').length).toBeGreaterThan(4);
    expect(text).not.toContain(key);
    expect(text).not.toContain(ADMIN_KEY);
  });
});

describe('docker-compose.yml', () => {
  it('is a valid compose file with the whole stack, checked offline by docker-compose', () => {
    const services = execFileSync('docker-compose', ['-f', 'docker-compose.yml', 'config', '--services'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(services.split('\n').filter(Boolean).sort()).toEqual(
      [
        'api',
        'archive-bucket',
        // one-shot, under the `ops` profile: `docker compose --profile ops run --rm backup`
        'backup',
        'grafana',
        'jaeger',
        'migrate',
        'minio',
        'otel-collector',
        'postgres',
        'prometheus',
        'redis',
        // one-shot, under the `ops` profile: `docker compose --profile ops run retention`
        'retention',
        'worker',
      ].sort(),
    );
  });
});

describe('a real Prometheus', () => {
  it('scrapes the API and the worker, and its query API returns tributary_ series', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tributary-prometheus-'));
    const port = await freePort();
    const target = (url: string) => new URL(url).host;
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s }',
        'scrape_configs:',
        `  - { job_name: api, static_configs: [ { targets: ['${target(api.url)}'] } ] }`,
        `  - { job_name: worker, static_configs: [ { targets: ['${target(workerMetricsUrl)}'] } ] }`,
      ].join('\n'),
    );
    const prometheus = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: 'ignore' },
    );
    try {
      const query = async (q: string) => {
        const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`);
        const body = (await res.json()) as {
          data?: { result?: { metric: Record<string, string>; value: [number, string] }[] };
        };
        return body.data?.result ?? [];
      };
      const accepted = await waitFor(
        async () => {
          const r = await query('tributary_events_accepted_total{job="api"}').catch(() => []);
          return r.length > 0 ? r : null;
        },
        30_000,
        'a scraped tributary_ series',
      );
      expect(Number(accepted[0]?.value[1])).toBeGreaterThanOrEqual(20);
      const jobs = await waitFor(async () => {
        const r = await query('count by (job) ({__name__=~"tributary_.+"})').catch(() => []);
        return r.length === 2 ? r : null;
      }, 30_000);
      expect(jobs.map((r) => r.metric.job).sort()).toEqual(['api', 'worker']);
    } finally {
      prometheus.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
