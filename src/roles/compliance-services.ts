import type { ObjectStore } from '../archive/object-store.ts';
import { createObjectStore } from '../archive/object-store.ts';
import type { DeadLetterStream } from '../buffer/dead-letter.ts';
import type { WorkerStatusBoard } from '../buffer/worker-status.ts';
import { ErasureService } from '../compliance/erasure.ts';
import type { ExportOptions } from '../compliance/export.ts';
import type { MetadataCipher } from '../compliance/metadata-cipher.ts';
import { SubjectRegistry } from '../compliance/subjects.ts';
import type { Deps } from '../deps.ts';
import { RetentionService } from '../retention/service.ts';
import type { ReadRouter } from '../store/read-replica.ts';

// How the retention and compliance services are made from the clients; services.ts decides
// when (once, on first use) and how they are closed.

/** Retention passes over the archive's object store (S3 or ARCHIVE_DIR). */
export function createRetention({ pool, logger, metrics, config }: Deps): RetentionService {
  return new RetentionService({ pool, store: createObjectStore(config), logger, metrics, config });
}

/** The opt-out and erasure lists, loaded and subscribed to changes (on a connection of its own). */
export async function startSubjects(deps: Deps): Promise<SubjectRegistry> {
  const { pool, redis, redisKeys, logger } = deps;
  const subjects = new SubjectRegistry({
    pool,
    redis,
    subscriber: deps.blockingRedis(60_000),
    keys: redisKeys,
    logger,
  });
  await subjects.start();
  return subjects;
}

/** Erasure requests over the database, the buffer (through the workers) and the archive. */
export function createErasure(
  { config, pool, redis, redisKeys, logger, metrics }: Deps,
  parts: { store: ObjectStore; subjects: SubjectRegistry; workers: WorkerStatusBoard },
): ErasureService {
  return new ErasureService({
    pool,
    redis,
    keys: redisKeys,
    ...parts,
    logger,
    metrics,
    workDir: config.ARCHIVE_WORK_DIR,
    batchRows: config.RETENTION_BATCH_ROWS,
    anonymizeSecret: config.ANONYMIZE_SECRET,
    staleMs: config.DSAR_LOCK_TTL_MS,
  });
}

/** What a subject's export reads: the database, the dead letters, the archive, and the cipher for their metadata. */
export function exportOptions(
  { config, pool, metrics }: Deps,
  store: ObjectStore,
  cipher: MetadataCipher | undefined,
  deadLetters: DeadLetterStream,
  reads: ReadRouter,
): ExportOptions {
  return {
    pool,
    reads,
    store,
    metrics,
    workDir: config.ARCHIVE_WORK_DIR,
    anonymizeSecret: config.ANONYMIZE_SECRET,
    cipher,
    deadLetters,
  };
}
