import type { MetadataEncryption } from '../compliance/metadata-cipher.ts';
import type { Config } from '../config.ts';
import { startTracing } from '../telemetry/tracing.ts';
import { createServices, type Services } from './services.ts';

/**
 * Runs a long-lived role (`serve`, `work`, `all`): tracing first (it instruments the clients
 * built next), then the composition root, then `start`; on SIGTERM/SIGINT closes everything
 * and exits 0, or exits 1 when that takes longer than SHUTDOWN_TIMEOUT_MS.
 */
export async function runUntilSignalled(
  config: Config,
  role: string,
  encryption: MetadataEncryption | undefined,
  start: (services: Services) => Promise<void>,
): Promise<void> {
  const stopTracing = await startTracing(role);
  const services = createServices(config, { role, encryption, stopTracing });
  const { logger } = services.deps;
  // The handlers below are in place before the first await of `start`: no signal finds
  // the process without them once it has begun to start.
  const starting = start(services);
  const started = starting.then(
    () => true,
    () => false,
  );

  let shuttingDown = false;
  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, config.SHUTDOWN_TIMEOUT_MS);
    force.unref();
    // A signal while starting (the 'listening' line is out before `all` has started its
    // worker) waits for the start, so what it builds is closed too; a failed start exits 1.
    if (!(await started)) return;
    // Newest first: the listeners stop accepting, the worker finishes its batch, then the
    // services it used, the clients and telemetry.
    await services.close();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  await starting;
}
