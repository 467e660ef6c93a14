import { readdir, readFile } from 'node:fs/promises';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { BreakerState } from '../../src/buffer/worker-status.ts';
import type { DecryptFailure } from '../../src/compliance/metadata-cipher.ts';
import type { DropReason } from '../../src/compliance/subjects.ts';
import type { DbFailure } from '../../src/store/errors.ts';
import {
  COUNTER_LABEL_VALUES,
  type CounterLabelValue,
  DATA_LABELLED_COUNTERS,
  labelCombinations,
} from '../../src/telemetry/metric-labels.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';
import type { BreakerTrigger } from '../../src/worker/breaker.ts';

/** `true` only when A and B are the same union: a label list that drifts from its type fails to compile. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameAsTheCode: [
  Same<CounterLabelValue<'tributary_insert_failures_total', 'kind'>, DbFailure>,
  Same<CounterLabelValue<'tributary_events_skipped_total', 'reason'>, DropReason>,
  Same<CounterLabelValue<'tributary_metadata_decrypt_failures_total', 'reason'>, DecryptFailure>,
  Same<CounterLabelValue<'tributary_circuit_breaker_transitions_total', 'to'>, BreakerState>,
  Same<CounterLabelValue<'tributary_circuit_breaker_opens_total', 'trigger'>, BreakerTrigger>,
] = [true, true, true, true, true];

/** Series of a fresh registry, as `name{label="value",…}` → value. */
async function series(registry: Registry): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const metric of await registry.getMetricsAsJSON()) {
    for (const v of metric.values) {
      const labels = Object.entries(v.labels)
        .map(([k, l]) => `${k}="${l}"`)
        .join(',');
      out.set(`${(v as { metricName?: string }).metricName ?? metric.name}{${labels}}`, v.value);
    }
  }
  return out;
}

const seriesName = (name: string, labels: Record<string, string>) =>
  `${name}{${Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',')}}`;

describe('labelled counters', () => {
  it('export every known series at 0 before anything is counted', async () => {
    expect(sameAsTheCode).toEqual([true, true, true, true, true]);
    const found = await series(new Metrics(new Registry()).registry);
    const expected = Object.entries(COUNTER_LABEL_VALUES).flatMap(([name, values]) =>
      labelCombinations(values).map((labels) => seriesName(name, labels)),
    );
    // 7 + 2 + 3 + 3 + 2 + 2 + 5 + 3 + 3
    expect(expected).toHaveLength(36);
    for (const s of expected) expect(found.get(s), s).toBe(0);
    expect(found.get('tributary_insert_failures_total{kind="unavailable"}')).toBe(0);
  });

  it('count from 0, and keep their series through a registry reset', async () => {
    const metrics = new Metrics(new Registry());
    metrics.insertFailures.inc({ kind: 'data' });
    let found = await series(metrics.registry);
    expect(found.get('tributary_insert_failures_total{kind="data"}')).toBe(1);
    expect(found.get('tributary_insert_failures_total{kind="transient"}')).toBe(0);
    metrics.registry.resetMetrics();
    found = await series(metrics.registry);
    expect(found.get('tributary_insert_failures_total{kind="data"}')).toBe(0);
    expect(found.get('tributary_events_skipped_total{reason="erased"}')).toBe(0);
  });

  it('every counter with labels has its label values listed, label for label', () => {
    const metrics = new Metrics(new Registry());
    const unlisted: string[] = [];
    for (const metric of metrics.registry.getMetricsAsArray()) {
      const { name, labelNames = [] } = metric as unknown as { name: string; labelNames?: string[] };
      const type = (metric as unknown as { type?: string }).type;
      if (type !== 'counter' || labelNames.length === 0) continue;
      const listed = (COUNTER_LABEL_VALUES as Record<string, Record<string, readonly string[]>>)[name];
      if (!listed && !(name in DATA_LABELLED_COUNTERS)) unlisted.push(name);
      if (!listed) continue;
      expect(Object.keys(listed).sort(), name).toEqual([...labelNames].sort());
    }
    expect(unlisted).toEqual([]);
  });

  it('the live view adds four series, without labels, all at 0 before anyone listens', async () => {
    const found = await series(new Metrics(new Registry()).registry);
    const live = [...found.keys()].filter((s) => s.startsWith('tributary_live_'));
    expect(live.sort()).toEqual([
      'tributary_live_frames_dropped_total{}',
      'tributary_live_listeners{}',
      'tributary_live_publish_failures_total{}',
      'tributary_live_records_published_total{}',
    ]);
    for (const s of live) expect(found.get(s), s).toBe(0);
  });

  it('every counter is built in telemetry/metrics.ts, where the test above sees it', async () => {
    const root = new URL('../../src/', import.meta.url);
    const files = (await readdir(root, { recursive: true })).filter((f) => f.endsWith('.ts'));
    const elsewhere: string[] = [];
    for (const file of files) {
      if (file === 'telemetry/metrics.ts' || file === 'telemetry/metric-labels.ts') continue;
      if ((await readFile(new URL(file, root), 'utf8')).includes('new Counter(')) elsewhere.push(file);
    }
    expect(elsewhere).toEqual([]);
  });
});
