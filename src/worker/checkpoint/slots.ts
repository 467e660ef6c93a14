import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Checkpoint, type CheckpointOptions } from './checkpoint.ts';
import { CheckpointLockedError } from './lock.ts';
import { listSegments } from './segments.ts';

const SLOT = /^worker-(\d+)$/;
const MAX_SLOTS = 1_024;

export type SlotOptions = Omit<CheckpointOptions, 'dir'> & {
  /** CHECKPOINT_DIR: the root that holds one `worker-N` directory per worker. */
  root: string;
};

/**
 * Opens the first `worker-N` directory under the root that no live worker holds, so any
 * number of workers can share one volume (compose replicas) and a restarted worker picks
 * up the directory, and the unreplayed batches, of the one it replaces.
 */
export async function openOwnCheckpoint(opts: SlotOptions): Promise<Checkpoint> {
  await mkdir(opts.root, { recursive: true });
  for (let slot = 0; slot < MAX_SLOTS; slot++) {
    try {
      return await Checkpoint.open({ ...opts, dir: join(opts.root, `worker-${slot}`) });
    } catch (err) {
      if (!(err instanceof CheckpointLockedError)) throw err;
    }
  }
  throw new Error(`every one of ${MAX_SLOTS} checkpoint directories under ${opts.root} is in use`);
}

/**
 * Replays the checkpoints of workers that are gone for good (after a scale-down nobody
 * reopens their directory): every `worker-N` directory with segments whose lock can be
 * taken is replayed through `persist`, then released.
 */
export async function replayOrphanedCheckpoints(
  opts: SlotOptions & { own: string },
  persist: (events: string[]) => Promise<void>,
  stop: () => boolean,
): Promise<number> {
  let replayed = 0;
  for (const name of await readdir(opts.root).catch(() => [] as string[])) {
    const dir = join(opts.root, name);
    if (!SLOT.test(name) || dir === opts.own || stop()) continue;
    if ((await listSegments(dir).catch(() => [])).length === 0) continue;
    let orphan: Checkpoint;
    try {
      orphan = await Checkpoint.open({ ...opts, dir, reportGauges: false });
    } catch (err) {
      if (err instanceof CheckpointLockedError) continue;
      throw err;
    }
    try {
      opts.logger.warn(
        { dir, checkpoint: orphan.stats() },
        'replaying the checkpoint of a worker that is gone',
      );
      replayed += await orphan.replay(persist, stop);
    } finally {
      await orphan.close();
    }
  }
  return replayed;
}
