import type { MetadataEncryption } from '../compliance/metadata-cipher.ts';
import type { Config } from '../config.ts';
import { startMetricsServer } from '../telemetry/metrics-server.ts';
import { registerStoreMetrics } from '../telemetry/store-metrics.ts';
import type { Worker } from '../worker/worker.ts';
import { runUntilSignalled } from './lifecycle.ts';
import type { Services } from './services.ts';

/** `tributary work`: a member of the consumer group writing to PostgreSQL. */
export async function runWork(config: Config, encryption: MetadataEncryption | undefined): Promise<void> {
  await runUntilSignalled(config, 'work', encryption, async (services) => {
    await startWorker(services, await buildWorker(services));
  });
}

/**
 * Everything the worker needs, and the worker itself, built but not reading yet:
 * partitions are made (or retried hourly), the checkpoint opened, opt-outs loaded.
 */
export async function buildWorker(services: Services): Promise<Worker> {
  const { metrics, pool } = services.deps;
  await services.maintenance();
  registerStoreMetrics(metrics.registry, pool);
  await services.checkpoint();
  await services.erasure();
  return services.worker();
}

/**
 * Starts reading (once the consumer groups exist), polling erasure requests, the retention
 * schedule and the metrics listener (METRICS_PORT); each is stopped before the worker drains.
 */
export async function startWorker(services: Services, worker: Worker): Promise<void> {
  const { config, logger, metrics, redisKeys } = services.deps;
  await worker.start();
  const erasure = await services.erasure();
  erasure.startPolling();
  services.defer('erasure-polling', () => erasure.stop());
  const retention = await services.retention();
  retention.startSchedule();
  services.defer('retention-schedule', () => retention.stop());
  // Started after the worker: closed before it, so a run's last batch is buffered, not cut.
  if (config.SOURCE_RUNNERS > 0) {
    const sources = await services.sources();
    sources.start();
    services.defer('source-runners', () => sources.stop());
  }
  if (config.MATERIALIZE_RUNNERS > 0) {
    const materializers = await services.materializers();
    materializers.start();
    services.defer('materialize-runners', () => materializers.stop());
  }
  const metricsServer =
    config.METRICS_PORT === undefined
      ? undefined
      : await startMetricsServer(metrics.registry, config.HOST, config.METRICS_PORT);
  if (metricsServer) services.defer('metrics-server', () => metricsServer.close());
  const consumer = await services.consumer();
  const checkpoint = await services.checkpoint();
  logger.info(
    {
      consumer: consumer.name,
      ...(metricsServer ? { metricsPort: metricsServer.port } : {}),
      partitions: redisKeys.partitions,
      checkpointDir: checkpoint.dir,
      checkpoint: checkpoint.stats(),
    },
    'worker started',
  );
}
