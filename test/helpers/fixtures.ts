/**
 * Shared set-up as vitest fixtures: each is made once per test file and cleaned up inside
 * the fixture when the file is done (STYLE.md, Tests). A file picks the one it needs,
 * `const test = stackTest({ … })`, and writes `test('…', async ({ stack }) => …)`.
 *
 * Each factory also makes its fixture in a `beforeAll`, so that starting servers and
 * processes counts against the hook timeout, as in the `beforeAll` blocks these replace,
 * not against the first test's own. vitest reads which fixtures a function needs from its
 * first parameter, which must be an object pattern; `{}` says "none".
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'vitest';
import { archiveEnv } from './archive-reader.ts';
import { createTestEnv, type PrivateDatabaseEnv } from './env.ts';
import { batchLoad, type IngestLoad, type IngestLoadOptions } from './ingest-load.ts';
import { freePort, PrivatePostgres, type PrivatePostgresOptions } from './private-servers.ts';
import type { TributaryProcess } from './processes.ts';
import { PrivateRedisCluster, type RedisClusterOptions } from './redis-cluster.ts';
import { startS3Server } from './s3-server.ts';
import { type StackOptions, startStack } from './stack.ts';

/** A breaker that opens after two failures and probes every 0.2–1 s, so outages show quickly. */
export const FAST_BREAKER = {
  BREAKER_FAILURE_THRESHOLD: '2',
  BREAKER_HALF_OPEN_AFTER_MS: '200',
  BREAKER_MAX_HALF_OPEN_AFTER_MS: '1000',
};

/** `stack`: a migrated test database with `serve` (and `work`) running, for the whole file. */
export function stackTest(options: StackOptions = {}) {
  // biome-ignore lint/correctness/noEmptyPattern: vitest's fixture syntax (see the top)
  const extended = test.extend('stack', { scope: 'file' }, async ({}, { onCleanup }) => {
    const stack = await startStack(options);
    onCleanup(() => stack.close());
    return stack;
  });
  extended.beforeAll(async ({ stack: _made }) => {});
  return extended;
}

/**
 * `testEnv`: a test env on a private PostgreSQL cluster the test may stop and start
 * (`testEnv.postgres`), migrated, with one CHECKPOINT_DIR for all its workers, and
 * `settings` in every process's environment; nothing runs yet (`testEnv.start(role)`).
 * For the tests that take the database away; `postgresOptions` are the cluster's own
 * (server settings such as an archive_command, pg_hba lines).
 */
export function privateDatabaseTest(
  settings: Record<string, string> = {},
  postgresOptions: PrivatePostgresOptions = {},
) {
  // biome-ignore lint/correctness/noEmptyPattern: vitest's fixture syntax (see the top)
  const extended = test.extend('testEnv', { scope: 'file' }, async ({}, { onCleanup }) => {
    const postgres = new PrivatePostgres(await freePort(), postgresOptions);
    postgres.start();
    const testEnv = createTestEnv({ postgres, sharedCheckpointDir: true, settings });
    onCleanup(() => testEnv.cleanup());
    await testEnv.migrate();
    return testEnv;
  });
  extended.beforeAll(async ({ testEnv: _made }) => {});
  return extended;
}

/**
 * The opening of the checkpoint tests: `serve` and `work` started, PostgreSQL stopped, then
 * batches sent (see {@link batchLoad}) until `limit` events were; Redis takes them all.
 */
export async function ingestWithDatabaseDown(
  testEnv: PrivateDatabaseEnv,
  load: Pick<IngestLoadOptions, 'senders' | 'batchSize' | 'limit'>,
): Promise<{ api: TributaryProcess; worker: TributaryProcess; load: IngestLoad }> {
  const api = await testEnv.start('serve');
  const worker = await testEnv.start('work');
  testEnv.postgres.stop();
  const ingest = batchLoad(api.url, load);
  await ingest.run();
  return { api, worker, load: ingest };
}

/**
 * `s3` (a real S3 protocol server), `workDir` (ARCHIVE_WORK_DIR, a temp dir) and `stack`,
 * whose settings, for its processes and every `stack.env.env()`, archive there and accept
 * events a year back (retention runs are given shorter settings).
 */
export function archiveStackTest(options: StackOptions = {}) {
  const extended = test
    // biome-ignore lint/correctness/noEmptyPattern: vitest's fixture syntax (see the top)
    .extend('s3', { scope: 'file' }, async ({}, { onCleanup }) => {
      const s3 = await startS3Server();
      onCleanup(() => s3.stop());
      return s3;
    })
    // biome-ignore lint/correctness/noEmptyPattern: vitest's fixture syntax (see the top)
    .extend('workDir', { scope: 'file' }, async ({}, { onCleanup }) => {
      const dir = mkdtempSync(join(tmpdir(), 'tributary-archive-work-'));
      onCleanup(() => rmSync(dir, { recursive: true, force: true }));
      return dir;
    })
    .extend('stack', { scope: 'file' }, async ({ s3, workDir }, { onCleanup }) => {
      const stack = await startStack({
        ...options,
        settings: {
          RETENTION_DAYS: '400',
          RETENTION_SCHEDULE: 'off',
          ...archiveEnv(s3.config),
          ARCHIVE_WORK_DIR: workDir,
          ...options.settings,
        },
      });
      onCleanup(() => stack.close());
      return stack;
    });
  extended.beforeAll(async ({ stack: _made }) => {});
  return extended;
}

/**
 * `cluster` (a private Redis Cluster), `client` (a cluster client of it) and `testEnv`, a
 * migrated test env whose processes use the cluster (REDIS_CLUSTER_NODES) and `settings`;
 * nothing runs yet (`testEnv.start(role)`).
 */
export function redisClusterTest(options: RedisClusterOptions, settings: Record<string, string> = {}) {
  const extended = test
    // biome-ignore lint/correctness/noEmptyPattern: vitest's fixture syntax (see the top)
    .extend('cluster', { scope: 'file' }, async ({}, { onCleanup }) => {
      const cluster = await PrivateRedisCluster.start(options);
      onCleanup(() => cluster.destroy());
      return cluster;
    })
    .extend('client', { scope: 'file' }, async ({ cluster }, { onCleanup }) => {
      const client = cluster.client();
      onCleanup(() => client.disconnect());
      return client;
    })
    .extend('testEnv', { scope: 'file' }, async ({ cluster }, { onCleanup }) => {
      const testEnv = createTestEnv({ settings: { REDIS_CLUSTER_NODES: cluster.seeds, ...settings } });
      onCleanup(() => testEnv.cleanup());
      await testEnv.migrate();
      return testEnv;
    });
  extended.beforeAll(async ({ client: _client, testEnv: _made }) => {});
  return extended;
}
