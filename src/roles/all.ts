import type { MetadataEncryption } from '../compliance/metadata-cipher.ts';
import type { Config } from '../config.ts';
import { runUntilSignalled } from './lifecycle.ts';
import { migrate } from './migrate.ts';
import { buildApi, listen } from './serve.ts';
import { buildWorker, startWorker } from './work.ts';

/**
 * `tributary all`: migrate, then the API and a worker in one process, sharing one set of
 * services. The worker is built before the API listens and started after, so at shutdown
 * the listeners (newest) stop accepting before the worker drains.
 */
export async function runAll(config: Config, encryption: MetadataEncryption | undefined): Promise<void> {
  await runUntilSignalled(config, 'all', encryption, async (services) => {
    services.deps.logger.info(await migrate(config), 'database ready');
    const app = await buildApi(services);
    const worker = await buildWorker(services);
    await listen(services, app);
    await startWorker(services, worker);
  });
}
