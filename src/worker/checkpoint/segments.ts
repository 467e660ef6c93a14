import { constants, type FileHandle, open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

const SEGMENT = /^segment-(\d{12})\.log$/;

/** File name of segment number `seq`; names sort in creation order. */
export function segmentName(seq: number): string {
  return `segment-${String(seq).padStart(12, '0')}.log`;
}

export interface SegmentFile {
  seq: number;
  name: string;
  path: string;
  bytes: number;
}

/** Segment files of a directory, oldest first. */
export async function listSegments(dir: string): Promise<SegmentFile[]> {
  const out: SegmentFile[] = [];
  for (const name of await readdir(dir)) {
    const match = SEGMENT.exec(name);
    if (!match?.[1]) continue;
    const path = join(dir, name);
    out.push({ seq: Number(match[1]), name, path, bytes: (await stat(path)).size });
  }
  return out.sort((a, b) => a.seq - b.seq);
}

/**
 * fsync of a directory, so a file created or removed in it survives a crash of the
 * machine (the entry lives in the directory, not in the file).
 */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes every byte of `buf` at the end of an O_APPEND file (write may be partial). */
export async function appendAll(handle: FileHandle, buf: Buffer): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await handle.write(buf, done, buf.length - done);
    if (bytesWritten <= 0) throw new Error('write wrote nothing');
    done += bytesWritten;
  }
}

/** Removes a segment and makes the removal durable. */
export async function removeSegment(dir: string, segment: SegmentFile): Promise<void> {
  await rm(segment.path, { force: true });
  await syncDirectory(dir);
}
