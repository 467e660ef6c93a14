import type { Logger } from 'pino';

export const USAGE = `usage: tributary <role>

roles:
  all                     migrate, then serve and work in one process (the quick start)
  serve                   the HTTP API
  work                    a stream consumer writing to PostgreSQL
  migrate                 create the database if absent, apply migrations, create partitions
  retention               run one retention pass now (archive, verify, delete, anonymise)
  restore --from YYYY-MM [--to YYYY-MM] [--service NAME]
                          load archived rows back into PostgreSQL (idempotent)
  keys create --name NAME --scopes ingest,read[,dsar,admin] [--services A,B] [--rate-limit N]
  keys list
  keys revoke ID

Configuration comes from environment variables (see README).`;

/** A wrong command line: the CLI prints the message and exits 2. */
export class UsageError extends Error {}

/** A command's result as the last line of stdout, after every log line written before it. */
export async function printResult(logger: Logger, result: object): Promise<void> {
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
