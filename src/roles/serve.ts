import cluster from 'node:cluster';
import type { Hono } from 'hono';
import type { MetadataEncryption } from '../compliance/metadata-cipher.ts';
import type { Config } from '../config.ts';
import { runApiPrimary } from '../http/api-cluster.ts';
import { type AppDeps, createApp } from '../http/app.ts';
import type { AppEnv } from '../http/env.ts';
import { createIngestFastPath, type FastPath } from '../http/fast-ingest.ts';
import { startHttpServers } from '../http/server.ts';
import { createLogger } from '../telemetry/logger.ts';
import { runUntilSignalled } from './lifecycle.ts';
import type { Services } from './services.ts';

/** `tributary serve`: the HTTP API, in API_PROCESSES processes when more than one. */
export async function runServe(config: Config, encryption: MetadataEncryption | undefined): Promise<void> {
  if (config.API_PROCESSES > 1 && cluster.isPrimary) {
    runApiPrimary(config.API_PROCESSES, createLogger(config.LOG_LEVEL, { role: 'serve-primary' }));
    return;
  }
  await runUntilSignalled(config, 'serve', encryption, async (services) => {
    await listen(services, await buildApi(services));
  });
}

/** The API with every service it uses, not yet listening. Waits up to 5 s for Redis first. */
/** The HTTP API: the Hono app, and the fast path that serves the native ingest routes before it. */
export interface Api {
  app: Hono<AppEnv>;
  fastPath: FastPath;
}

export async function buildApi(services: Services): Promise<Api> {
  const { config, logger, metrics, redis, pool, db } = services.deps;
  await services.redisReady(5_000);
  const cipher = await services.cipher();
  const erasure = await services.erasure();
  const exports = await services.exportOptions();
  const monitor = await services.monitor();
  const workers = await services.workerStatus();
  // No route reads it: it runs for the autoscaling metric (ops/k8s).
  await services.demand();
  const deps: AppDeps = {
    config,
    logger,
    metrics,
    redis,
    pool,
    db,
    reads: await services.reads(),
    producer: await services.producer(),
    monitor,
    deadLetters: await services.deadLetters(),
    workers,
    retention: await services.retention(),
    subjects: await services.subjects(),
    erasure,
    exports,
    cipher,
    keys: await services.keyResolver(),
    rateLimiter: await services.rateLimiter(),
    live: await services.live(),
    plans: await services.plans(),
    sourceSecrets: await services.sourceSecrets(),
    webhooks: await services.webhooks(),
  };
  return { app: createApp(deps), fastPath: createIngestFastPath(deps) };
}

/** Starts the API's listeners; they are the first thing closed at shutdown, being the newest. */
export async function listen(services: Services, { app, fastPath }: Api): Promise<void> {
  const { config, logger } = services.deps;
  const server = await startHttpServers(app, config, fastPath);
  const live = await services.live();
  services.defer('http', async () => {
    // An open live stream is a request in flight: end them, or closing would wait for them.
    live?.closeStreams();
    await server.close();
  });
  logger.info({ port: server.port, adminPort: server.adminPort, tls: server.tls }, 'listening');
}
