import { parseArgs } from 'node:util';
import type { Config } from '../config.ts';
import { parseMonth } from '../retention/policy.ts';
import { printResult, UsageError } from './cli.ts';
import { createServices } from './services.ts';

interface RestoreArgs {
  from: ReturnType<typeof parseMonth>;
  to: ReturnType<typeof parseMonth>;
  service: string | undefined;
}

/** `--from YYYY-MM [--to YYYY-MM] [--service NAME]`, checked; a bad one is a UsageError. */
function parseRestoreArgs(args: string[]): RestoreArgs {
  const { values } = parseArgs({
    args,
    options: { from: { type: 'string' }, to: { type: 'string' }, service: { type: 'string' } },
  });
  if (!values.from) throw new UsageError('restore needs --from YYYY-MM');
  let from: ReturnType<typeof parseMonth>;
  let to: ReturnType<typeof parseMonth>;
  try {
    from = parseMonth(values.from);
    to = parseMonth(values.to ?? values.from);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (to.from < from.from) throw new UsageError('--to is before --from');
  if (values.service !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(values.service)) {
    throw new UsageError('--service must be 1–64 of [A-Za-z0-9._-]');
  }
  return { from, to, service: values.service };
}

/** `tributary restore --from YYYY-MM [--to YYYY-MM] [--service NAME]`: archived rows back into PostgreSQL. */
export async function runRestore(config: Config, args: string[]): Promise<void> {
  const { from, to, service } = parseRestoreArgs(args);
  const services = createServices(config, { role: 'restore' });
  try {
    const result = await (await services.retention()).restore(from, to, service);
    await printResult(services.deps.logger, { status: 'ok', ...result });
  } finally {
    await services.close();
  }
}
