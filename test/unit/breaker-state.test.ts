import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  BREAKER_GAUGE_VALUE,
  BREAKER_SEVERITY,
  type BreakerState,
  type WorkerStatus,
} from '../../src/buffer/worker-status.ts';
import { type HealthRoutesDeps, healthRoutes } from '../../src/http/routes/health.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { NOOP_ADMIN_KEY, noopDeps } from '../helpers/noop-deps.ts';

const status = (name: string, breaker: BreakerState): WorkerStatus => ({
  name,
  breaker,
  breakerSince: new Date().toISOString(),
  checkpoint: { segments: 0, bytes: 0, events: 0, failed: undefined },
  at: new Date().toISOString(),
});

/** `/health/database` with PostgreSQL reachable and these workers reporting. */
async function databaseHealth(breakers: BreakerState[]) {
  const deps = {
    redis: { ping: async () => 'PONG' },
    pool: { query: async () => ({ rows: [] }) },
    monitor: {},
    metrics: new Metrics(new Registry()),
    workers: { live: async () => breakers.map((b, i) => status(`w${i}`, b)) },
    keys: noopDeps().keys,
    reads: noopDeps().reads,
  } as unknown as HealthRoutesDeps;
  const res = await healthRoutes(deps).request('/health/database', {
    headers: { 'x-api-key': NOOP_ADMIN_KEY },
  });
  return { status: res.status, body: (await res.json()) as { status: string; circuitBreaker: string } };
}

describe('breaker states', () => {
  it('keep the gauge values dashboards and alert rules read, as the gauge help says', async () => {
    expect(BREAKER_GAUGE_VALUE).toEqual({ closed: 0, open: 1, 'half-open': 2 });
    const metrics = new Metrics(new Registry());
    const help = (await metrics.breakerState.get()).help;
    const listed = Object.entries(BREAKER_GAUGE_VALUE)
      .sort(([, a], [, b]) => a - b)
      .map(([state, value]) => `${value} ${state}`)
      .join(', ');
    expect(help).toContain(listed);
  });

  it('rank closed < half-open < open, whatever the gauge codes', () => {
    const bySeverity = (Object.keys(BREAKER_SEVERITY) as BreakerState[]).sort(
      (a, b) => BREAKER_SEVERITY[a] - BREAKER_SEVERITY[b],
    );
    expect(bySeverity).toEqual(['closed', 'half-open', 'open']);
  });

  it('health reports the worst worker breaker: open over half-open over closed', async () => {
    for (const order of [
      ['half-open', 'open', 'closed'],
      ['open', 'half-open'],
      ['closed', 'open'],
    ] as BreakerState[][]) {
      expect((await databaseHealth(order)).body.circuitBreaker, order.join()).toBe('open');
    }
    expect((await databaseHealth(['closed', 'half-open', 'closed'])).body.circuitBreaker).toBe('half-open');
    const ok = await databaseHealth(['closed', 'closed']);
    expect([ok.status, ok.body.status, ok.body.circuitBreaker]).toEqual([200, 'up', 'closed']);
    const probing = await databaseHealth(['closed', 'half-open']);
    expect([probing.status, probing.body.status]).toEqual([503, 'down']);
  });
});
