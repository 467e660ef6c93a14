import { readFile, statfs } from 'node:fs/promises';
import { freemem, totalmem } from 'node:os';
import { dirname, resolve } from 'node:path';

/** Free and total bytes of the volume holding a directory, as an unprivileged user sees them. */
export interface VolumeSpace {
  /** The directory measured: the checkpoint directory, or its nearest existing parent. */
  path: string;
  freeBytes: number;
  totalBytes: number;
}

/** This process's memory, and the memory it may use (the cgroup limit when one is set). */
export interface MemoryReport {
  rssBytes: number;
  heapUsedBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
  /** The container's limit (cgroup v2 `memory.max`, v1 `memory.limit_in_bytes`), else the host's memory. */
  limitBytes: number;
  /** The host's free memory. */
  systemFreeBytes: number;
}

/**
 * The space of the volume holding `dir` (statfs; blocks available to unprivileged users, as
 * `df` shows). A directory not made yet is measured on its nearest existing parent.
 */
export async function volumeSpace(dir: string): Promise<VolumeSpace> {
  let path = resolve(dir);
  for (;;) {
    try {
      const s = await statfs(path);
      return { path, freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
    } catch (err) {
      const parent = dirname(path);
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent === path) throw err;
      path = parent;
    }
  }
}

let cgroupLimit: Promise<number | undefined> | undefined;

/** The cgroup memory limit, read once; undefined when there is none ("max", or a v1 "no limit"). */
function memoryLimit(): Promise<number | undefined> {
  cgroupLimit ??= (async () => {
    for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
      const text = await readFile(file, 'utf8').catch(() => undefined);
      const bytes = Number(text?.trim());
      // cgroup v1 says "no limit" with a number near 2^63.
      if (text !== undefined && Number.isSafeInteger(bytes) && bytes > 0) return bytes;
    }
    return undefined;
  })();
  return cgroupLimit;
}

export async function memoryReport(): Promise<MemoryReport> {
  const m = process.memoryUsage();
  const limit = await memoryLimit();
  return {
    rssBytes: m.rss,
    heapUsedBytes: m.heapUsed,
    heapTotalBytes: m.heapTotal,
    externalBytes: m.external,
    limitBytes: Math.min(limit ?? Number.POSITIVE_INFINITY, totalmem()),
    systemFreeBytes: freemem(),
  };
}
