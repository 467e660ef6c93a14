import { type Config, maxRetentionDays } from '../config.ts';
import { migrateDatabase } from '../store/migrate.ts';

/**
 * Migrations hold a session advisory lock across statements, which PgBouncer in transaction
 * mode cannot keep: they take the direct connection when one is given. Everything else uses
 * DATABASE_URL.
 */
function migrationUrl(config: Config): string {
  return config.DATABASE_MIGRATION_URL ?? config.DATABASE_URL;
}

/** Creates the database if absent, applies migrations, creates partitions; resolves to what it did. */
export function migrate(config: Config): ReturnType<typeof migrateDatabase> {
  return migrateDatabase(migrationUrl(config), maxRetentionDays(config));
}

/** `tributary migrate`: prints `{"status":"ok",…}`. */
export async function runMigrate(config: Config): Promise<void> {
  const result = await migrate(config);
  process.stdout.write(`${JSON.stringify({ status: 'ok', ...result })}\n`);
}
