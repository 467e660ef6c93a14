import { readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

/** A lease not refreshed for this long belongs to a process that is gone (another host's). */
const STALE_MS = 30_000;
const REFRESH_MS = 5_000;

export class CheckpointLockedError extends Error {
  override readonly name = 'CheckpointLockedError';
}

interface Owner {
  host: string;
  pid: number;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One worker per checkpoint directory: two writers appending to one segment would
 * interleave records. The lock file names its owner and is refreshed while held; it is
 * taken over when its process is gone (same host) or it went stale (another host,
 * e.g. a volume moved to a new container).
 */
export class DirectoryLock {
  /** Lock files held by this process (the file alone cannot tell two holders in one process apart). */
  static readonly #held = new Set<string>();
  readonly #path: string;
  #timer: NodeJS.Timeout | undefined;

  private constructor(path: string) {
    this.#path = path;
  }

  /** Takes the lock, or throws {@link CheckpointLockedError} naming the holder. */
  static async acquire(dir: string): Promise<DirectoryLock> {
    const path = join(dir, 'owner.lock');
    if (DirectoryLock.#held.has(path)) {
      throw new CheckpointLockedError(`checkpoint directory ${dir} is already in use by this process`);
    }
    const me: Owner = { host: hostname(), pid: process.pid };
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await writeFile(path, JSON.stringify(me), { flag: 'wx' });
        const lock = new DirectoryLock(path);
        DirectoryLock.#held.add(path);
        lock.#timer = setInterval(() => {
          const now = new Date();
          utimes(path, now, now).catch(() => {});
        }, REFRESH_MS);
        lock.#timer.unref();
        return lock;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = await DirectoryLock.#holder(path);
      if (holder.live) {
        throw new CheckpointLockedError(
          `checkpoint directory ${dir} is in use by pid ${holder.owner?.pid} on ${holder.owner?.host}; give each worker its own CHECKPOINT_DIR`,
        );
      }
      await rm(path, { force: true });
    }
    throw new CheckpointLockedError(`could not take the lock on ${dir}`);
  }

  static async #holder(path: string): Promise<{ owner: Owner | undefined; live: boolean }> {
    let owner: Owner | undefined;
    try {
      owner = JSON.parse(await readFile(path, 'utf8')) as Owner;
    } catch {
      return { owner: undefined, live: false };
    }
    if (owner.host === hostname()) return { owner, live: owner.pid !== process.pid && alive(owner.pid) };
    const { mtimeMs } = await stat(path);
    return { owner, live: Date.now() - mtimeMs < STALE_MS };
  }

  async release(): Promise<void> {
    clearInterval(this.#timer);
    DirectoryLock.#held.delete(this.#path);
    await rm(this.#path, { force: true });
  }
}
