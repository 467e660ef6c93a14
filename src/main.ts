#!/usr/bin/env -S node --max-semi-space-size=16
import { setFlagsFromString } from 'node:v8';
import { parseMetadataEncryption } from './compliance/metadata-cipher.ts';
import { ConfigError, loadConfig } from './config.ts';
import { runAll } from './roles/all.ts';
import { USAGE, UsageError } from './roles/cli.ts';
import { runKeys } from './roles/keys.ts';
import { runMigrate } from './roles/migrate.ts';
import { runRestore } from './roles/restore.ts';
import { runRetention } from './roles/retention.ts';
import { runServe } from './roles/serve.ts';
import { runWork } from './roles/work.ts';

// A regular expression that backtracks too long (a tracking plan's `pattern` on hostile
// input) finishes on V8's linear-time engine instead of holding the process (events/plans.ts).
setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');

/** `tributary <role> [args]`: reads the configuration and hands over to the role. */
async function main(argv: string[]): Promise<void> {
  const [role, ...args] = argv;
  if (!role || role === '--help' || role === '-h' || role === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const config = loadConfig();
  // Checked for every role, so a bad key stops `migrate` in a deploy before `serve` starts.
  const encryption = parseMetadataEncryption(config);
  switch (role) {
    case 'serve':
      return runServe(config, encryption);
    case 'work':
      return runWork(config, encryption);
    case 'all':
      return runAll(config, encryption);
    case 'migrate':
      return runMigrate(config);
    case 'keys':
      return runKeys(config, args);
    case 'retention':
      return runRetention(config);
    case 'restore':
      return runRestore(config, args);
    default:
      throw new UsageError(`unknown role "${role}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof UsageError) {
    process.stderr.write(`tributary: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`tributary: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
