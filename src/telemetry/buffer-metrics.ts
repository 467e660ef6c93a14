import { Gauge, type Registry } from 'prom-client';
import type { KeyLoad } from '../buffer/key-load.ts';
import type { BufferMonitor, BufferSnapshot } from '../buffer/monitor.ts';

/** One snapshot serves every buffer gauge of a scrape. */
const SNAPSHOT_TTL_MS = 1_000;

/**
 * Buffer gauges read from Redis when scraped: length, pending and lag per partition,
 * utilisation, memory ratio, dead letters and the backpressure flag. Every API process
 * reports the same Redis, so under API_PROCESSES they are aggregated with `max`, not summed.
 */
export function registerBufferMetrics(registry: Registry, monitor: BufferMonitor): void {
  let cached: { at: number; snapshot: Promise<BufferSnapshot> } | undefined;
  const snapshot = () => {
    if (!cached || Date.now() - cached.at > SNAPSHOT_TTL_MS) {
      cached = { at: Date.now(), snapshot: monitor.snapshot() };
      cached.snapshot.catch(() => {
        cached = undefined;
      });
    }
    return cached.snapshot;
  };
  const perPartition = (
    name: string,
    help: string,
    pick: (p: BufferSnapshot['partitions'][number]) => number | null,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['partition'],
      registers: [registry],
      aggregator: 'max',
      async collect() {
        this.reset();
        const s = await snapshot().catch(() => undefined);
        for (const p of s?.partitions ?? []) {
          const value = pick(p);
          if (value !== null) this.set({ partition: String(p.partition) }, value);
        }
      },
    });
  const whole = (name: string, help: string, pick: (s: BufferSnapshot) => number | null) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      aggregator: 'max',
      async collect() {
        this.reset();
        const s = await snapshot().catch(() => undefined);
        const value = s ? pick(s) : null;
        if (value !== null) this.set(value);
      },
    });

  perPartition(
    'tributary_buffer_length',
    'Entries in a partition stream, not yet persisted',
    (p) => p.length,
  );
  perPartition(
    'tributary_buffer_pending',
    'Entries delivered to a worker and not yet acknowledged',
    (p) => p.pending,
  );
  perPartition('tributary_buffer_lag', 'Entries not yet delivered to any worker', (p) => p.lag);
  whole(
    'tributary_buffer_utilisation_ratio',
    'Unpersisted entries / BUFFER_MAX_EVENTS',
    (s) => s.utilisation,
  );
  whole(
    'tributary_buffer_memory_ratio',
    'Redis used_memory / maxmemory (absent without maxmemory)',
    (s) => s.memoryRatio,
  );
  whole('tributary_dead_letters', 'Entries in the dead-letter stream', (s) => s.deadLetters);
  whole('tributary_backpressure_active', '1 while ingest answers 429 backpressure', (s) =>
    s.backpressure ? 1 : 0,
  );
}

/** `tributary_key_buffered_events{key_id}`: each key's events in the buffer (BUFFER_MAX_SHARE_PER_KEY). */
export function registerKeyLoadMetrics(registry: Registry, load: KeyLoad): void {
  new Gauge({
    name: 'tributary_key_buffered_events',
    help: 'Unpersisted events in the buffer per API key, as tracked for BUFFER_MAX_SHARE_PER_KEY',
    labelNames: ['key_id'],
    registers: [registry],
    aggregator: 'max',
    collect() {
      this.reset();
      for (const [keyId, n] of load.snapshot()) this.set({ key_id: keyId }, n);
    },
  });
}
