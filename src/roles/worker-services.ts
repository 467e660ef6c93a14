import { hostname } from 'node:os';
import { StreamConsumer } from '../buffer/consumer.ts';
import type { DeadLetterStream } from '../buffer/dead-letter.ts';
import type { WorkerStatusBoard } from '../buffer/worker-status.ts';
import type { SubjectRegistry } from '../compliance/subjects.ts';
import { maxRetentionDays } from '../config.ts';
import type { Deps } from '../deps.ts';
import { DatabaseBreaker } from '../worker/breaker.ts';
import type { Checkpoint } from '../worker/checkpoint/checkpoint.ts';
import { replayOrphanedCheckpoints, type SlotOptions } from '../worker/checkpoint/slots.ts';
import { Maintenance } from '../worker/maintenance.ts';
import { Worker } from '../worker/worker.ts';

// How the worker and its helpers are made from the clients; services.ts decides when (once,
// on first use) and how they are closed.

/** This process's member of the consumer group, on a blocking connection of its own. */
export function createConsumer(deps: Deps): StreamConsumer {
  const { config, redisKeys, logger } = deps;
  return new StreamConsumer({
    redis: deps.blockingRedis(config.READ_BLOCK_MS),
    keys: redisKeys,
    consumerName: `${hostname()}-${process.pid}`,
    logger,
    trackKeyLoad: config.BUFFER_MAX_SHARE_PER_KEY !== undefined,
  });
}

/** Partitions made ahead of time (now, or retried hourly when the database is down) and streams trimmed. */
export async function startMaintenance(
  { config, pool, logger }: Deps,
  consumer: StreamConsumer,
): Promise<Maintenance> {
  const maintenance = new Maintenance({ pool, consumer, maxRetentionDays: maxRetentionDays(config), logger });
  await maintenance.ensurePartitions().catch((err: unknown) => {
    logger.warn({ err }, 'partition maintenance failed at start; retrying hourly');
  });
  maintenance.start();
  return maintenance;
}

/** Where the worker's checkpoint directories are: one `worker-N` per worker under CHECKPOINT_DIR. */
export function slotOptions({ config, logger, metrics }: Deps): SlotOptions {
  return { root: config.CHECKPOINT_DIR, segmentBytes: config.CHECKPOINT_SEGMENT_BYTES, logger, metrics };
}

/** The worker, built but not reading; its breaker reports every change on the status board. */
export function createWorker(
  deps: Deps,
  parts: {
    consumer: StreamConsumer;
    checkpoint: Checkpoint;
    deadLetters: DeadLetterStream;
    statusBoard: WorkerStatusBoard;
    subjects: SubjectRegistry;
  },
): Worker {
  const { config, pool, logger, metrics } = deps;
  let worker: Worker | undefined;
  const breaker = new DatabaseBreaker({
    config,
    logger,
    metrics,
    onChange: () => void worker?.publishStatus(),
  });
  worker = new Worker({
    ...parts,
    pool,
    breaker,
    replayOrphans: (persist, stop) =>
      replayOrphanedCheckpoints({ ...slotOptions(deps), own: parts.checkpoint.dir }, persist, stop),
    logger,
    metrics,
    config,
  });
  return worker;
}
