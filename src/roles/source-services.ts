import { hostname } from 'node:os';
import type { BufferMonitor } from '../buffer/monitor.ts';
import type { EventProducer } from '../buffer/producer.ts';
import type { MetadataCipher } from '../compliance/metadata-cipher.ts';
import type { SubjectRegistry } from '../compliance/subjects.ts';
import type { Deps } from '../deps.ts';
import { ingestPipeline } from '../http/ingest.ts';
import type { PlanRegistry } from '../http/plan-registry.ts';
import { sourcePrincipal } from '../http/routes/sources.ts';
import { type SourceIngest, SourceRunners } from '../sources/runner.ts';
import type { SourceSecrets } from '../sources/secrets.ts';

// How a `work` process's source runners are made; services.ts decides when (once, on first
// use) and how they are closed.

/**
 * The runners of this process, not started. Their events go through the pipeline HTTP
 * ingest uses (validation, opt-outs, the source's service, tracking plans, backpressure) as
 * a principal bound to the source's service, recorded on each event as `source:<id>`.
 */
export function createSourceRunners(
  deps: Deps,
  parts: {
    secrets: SourceSecrets;
    producer: EventProducer;
    monitor: BufferMonitor;
    subjects: SubjectRegistry;
    plans: PlanRegistry;
    cipher: MetadataCipher | undefined;
  },
): SourceRunners {
  const { config, pool, logger, metrics } = deps;
  const pipeline = ingestPipeline({ config, metrics, ...parts });
  const ingest: SourceIngest = (source, inputs, rejected) => {
    const principal = sourcePrincipal(source.id, source.service);
    return pipeline.many(principal, inputs, rejected, pipeline.validation(principal.keyId));
  };
  return new SourceRunners({
    pool,
    secrets: parts.secrets,
    ingest,
    logger,
    metrics,
    config,
    holder: `${hostname()}-${process.pid}`,
  });
}
