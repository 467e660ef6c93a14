// Preloaded into a process by `npm run bench:profile -- --gc`: records every garbage collection
// pause (perf_hooks) and, at exit, writes their count and percentiles by kind to GC_REPORT.
import { writeFileSync } from 'node:fs';
import { constants, PerformanceObserver } from 'node:perf_hooks';

const KINDS = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental marking',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak callbacks',
};
const pauses = new Map();
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = KINDS[entry.detail?.kind] ?? 'other';
    const list = pauses.get(kind) ?? [];
    list.push(entry.duration);
    pauses.set(kind, list);
  }
}).observe({ entryTypes: ['gc'] });

process.once('exit', () => {
  const out = {};
  for (const [kind, ms] of pauses) {
    ms.sort((a, b) => a - b);
    const at = (p) => Math.round((ms[Math.min(ms.length - 1, Math.floor(ms.length * p))] ?? 0) * 100) / 100;
    const total = ms.reduce((a, b) => a + b, 0);
    out[kind] = { count: ms.length, totalMs: Math.round(total), p50: at(0.5), p99: at(0.99), max: at(1) };
  }
  if (process.env.GC_REPORT) writeFileSync(process.env.GC_REPORT, `${JSON.stringify(out, null, 2)}\n`);
});
