import type { Config } from '../config.ts';
import type { RetentionService } from '../retention/service.ts';
import { getRun } from '../store/retention-runs.repo.ts';
import { RetentionBusyError } from '../store/run-leases.repo.ts';
import { printResult } from './cli.ts';
import { createServices } from './services.ts';

/** `tributary retention`: one pass in the foreground; prints the run; exit 1 when it failed, 3 when busy. */
export async function runRetention(config: Config): Promise<void> {
  const services = createServices(config, { role: 'retention' });
  try {
    const service = await services.retention();
    let started: Awaited<ReturnType<RetentionService['start']>>;
    try {
      started = await service.start('cli');
    } catch (err) {
      if (err instanceof RetentionBusyError) {
        process.stderr.write(`tributary: ${err.message}; try again when it has finished\n`);
        process.exitCode = 3;
        return;
      }
      throw err;
    }
    const outcome = await started.done;
    const run = await getRun(services.deps.pool, started.runId);
    const { steps: _steps, ...summary } = run ?? { steps: [] };
    await printResult(services.deps.logger, summary);
    if (outcome !== 'completed') process.exitCode = 1;
  } finally {
    await services.close();
  }
}
