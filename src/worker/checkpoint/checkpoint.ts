import { copyFile, type FileHandle, mkdir, open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Metrics } from '../../telemetry/metrics.ts';
import { DirectoryLock } from './lock.ts';
import { decodeSegment, encodeRecord } from './record.ts';
import {
  appendAll,
  listSegments,
  removeSegment,
  type SegmentFile,
  segmentName,
  syncDirectory,
} from './segments.ts';

export interface CheckpointOptions {
  /** CHECKPOINT_DIR: one worker per directory. */
  dir: string;
  /** A new segment is started once the current one reaches this size. */
  segmentBytes: number;
  logger: Logger;
  metrics: Metrics;
  /** Set the backlog gauges (the worker's own checkpoint); false for an adopted one. */
  reportGauges?: boolean;
}

export interface CheckpointStats {
  segments: number;
  bytes: number;
  /** Events written and not yet replayed. */
  events: number;
  /** Set once a write or fsync failed: nothing more is written by this process. */
  failed: string | undefined;
}

/** The checkpoint refused a write: the entries must stay unacknowledged in Redis. */
export class CheckpointFailedError extends Error {
  override readonly name = 'CheckpointFailedError';
}

interface Segment extends SegmentFile {
  events: number;
}

interface Writable {
  segment: Segment;
  handle: FileHandle;
}

/**
 * The worker's disk checkpoint: while PostgreSQL is down, batches are appended here and
 * fsynced, and only then acknowledged in Redis, so the buffer does not fill up. Segments
 * are append-only; replay reads them oldest first and deletes each one only after every
 * row in it is committed. Replaying a segment twice (a crash during replay) is harmless:
 * the insert ignores rows already stored.
 */
export class Checkpoint {
  readonly #o: CheckpointOptions;
  readonly #lock: DirectoryLock;
  readonly #segments = new Map<number, Segment>();
  /** Segments already copied to quarantine/ in this process, so corruption is counted once. */
  readonly #quarantined = new Set<string>();
  #writable: Writable | undefined;
  #nextSeq = 1;
  #failed: Error | undefined;
  #appending: Promise<void> = Promise.resolve();

  private constructor(opts: CheckpointOptions, lock: DirectoryLock) {
    this.#o = opts;
    this.#lock = lock;
  }

  /**
   * Takes the directory, truncates a torn last record (a write cut short: never
   * acknowledged, Redis still has it), quarantines segments with corrupt records, and
   * counts what is waiting to be replayed.
   */
  static async open(opts: CheckpointOptions): Promise<Checkpoint> {
    await mkdir(join(opts.dir, 'quarantine'), { recursive: true });
    const checkpoint = new Checkpoint(opts, await DirectoryLock.acquire(opts.dir));
    for (const file of await listSegments(opts.dir)) {
      const { events } = await checkpoint.#scan(file, { repair: true });
      checkpoint.#segments.set(file.seq, { ...file, bytes: (await stat(file.path)).size, events });
      checkpoint.#nextSeq = Math.max(checkpoint.#nextSeq, file.seq + 1);
    }
    checkpoint.#report();
    const stats = checkpoint.stats();
    if (stats.segments > 0) opts.logger.info({ checkpoint: stats }, 'checkpoint has batches to replay');
    return checkpoint;
  }

  stats(): CheckpointStats {
    let bytes = 0;
    let events = 0;
    for (const s of this.#segments.values()) {
      bytes += s.bytes;
      events += s.events;
    }
    return { segments: this.#segments.size, bytes, events, failed: this.#failed?.message };
  }

  get failed(): boolean {
    return this.#failed !== undefined;
  }

  get hasBacklog(): boolean {
    return this.#segments.size > 0;
  }

  /**
   * Appends one batch and fdatasyncs it; resolves only when it is durable. After any
   * write or sync error the checkpoint refuses every later append: a failed fsync may
   * have dropped the dirty pages, so retrying it could report success for lost data.
   */
  append(events: readonly string[]): Promise<void> {
    // One append at a time (a worker stores several batches at once): records never interleave.
    const appended = this.#appending.then(() => this.#appendNow(events));
    this.#appending = appended.catch(() => {});
    return appended;
  }

  async #appendNow(events: readonly string[]): Promise<void> {
    if (this.#failed) throw new CheckpointFailedError(`checkpoint disabled: ${this.#failed.message}`);
    if (events.length === 0) return;
    // Payload: the events' JSON texts, one per line, byte for byte as they sat in the stream
    // (JSON text never holds a raw newline), so nothing is re-serialised on the way back.
    const record = encodeRecord(Buffer.from(events.join('\n')));
    try {
      const w = await this.#writableSegment();
      await appendAll(w.handle, record);
      await w.handle.datasync();
      w.segment.bytes += record.length;
      w.segment.events += events.length;
    } catch (err) {
      this.#failed = err instanceof Error ? err : new Error(String(err));
      await this.#writable?.handle.close().catch(() => {});
      this.#writable = undefined;
      this.#o.metrics.checkpointWriteFailures.inc();
      this.#o.logger.error(
        { err: this.#failed.message, dir: this.#o.dir },
        'checkpoint write failed; no more batches will be checkpointed by this process',
      );
      this.#report();
      throw new CheckpointFailedError(`checkpoint write failed: ${this.#failed.message}`);
    }
    this.#o.metrics.checkpointSpilled.inc(events.length);
    this.#report();
  }

  /**
   * Replays every segment, oldest first: `persist` is called per record (one batch of
   * event JSON texts) and must resolve only once the rows are committed. A segment is
   * deleted after all its records are persisted. Stops between records when `stop()`
   * says so; a `persist` error is rethrown with the segment left in place.
   */
  async replay(persist: (events: string[]) => Promise<void>, stop: () => boolean): Promise<number> {
    await this.#seal();
    let replayed = 0;
    for (const seq of [...this.#segments.keys()].sort((a, b) => a - b)) {
      const segment = this.#segments.get(seq) as Segment;
      const { records } = await this.#scan(segment, { repair: false });
      for (const events of records) {
        if (stop()) return replayed;
        await persist(events);
        replayed += events.length;
        this.#o.metrics.checkpointReplayed.inc(events.length);
      }
      await removeSegment(this.#o.dir, segment);
      this.#segments.delete(seq);
      this.#report();
      this.#o.logger.info({ segment: segment.name, events: segment.events }, 'checkpoint segment replayed');
    }
    return replayed;
  }

  async close(): Promise<void> {
    await this.#seal();
    await this.#lock.release();
  }

  async #writableSegment(): Promise<Writable> {
    if (this.#writable && this.#writable.segment.bytes < this.#o.segmentBytes) return this.#writable;
    await this.#seal();
    const seq = this.#nextSeq++;
    const name = segmentName(seq);
    const path = join(this.#o.dir, name);
    const handle = await open(path, 'a');
    // The new file's directory entry must be durable before any record in it is acknowledged.
    await syncDirectory(this.#o.dir);
    const segment: Segment = { seq, name, path, bytes: 0, events: 0 };
    this.#segments.set(seq, segment);
    this.#writable = { segment, handle };
    return this.#writable;
  }

  async #seal(): Promise<void> {
    const w = this.#writable;
    this.#writable = undefined;
    if (!w) return;
    await w.handle.close().catch(() => {});
    if (w.segment.bytes === 0) {
      await removeSegment(this.#o.dir, w.segment).catch(() => {});
      this.#segments.delete(w.segment.seq);
    }
  }

  /** Reads and checks a segment: its batches, with corruption quarantined and counted. */
  async #scan(
    file: SegmentFile,
    opts: { repair: boolean },
  ): Promise<{ records: string[][]; events: number }> {
    const buf = await readFile(file.path);
    const decoded = decodeSegment(buf);
    const records = decoded.records.map(({ payload }) => payload.toString('utf8').split('\n'));
    if (decoded.corrupt.length > 0) await this.#quarantine(file, decoded.corrupt);
    if (opts.repair && decoded.tornAt !== undefined) {
      const handle = await open(file.path, 'r+');
      try {
        await handle.truncate(decoded.tornAt);
        await handle.datasync();
      } finally {
        await handle.close();
      }
      this.#o.logger.warn(
        { segment: file.name, at: decoded.tornAt, dropped: buf.length - decoded.tornAt },
        'checkpoint: torn last record truncated (it was never acknowledged; Redis still holds it)',
      );
    }
    return { records, events: records.reduce((n, r) => n + r.length, 0) };
  }

  async #quarantine(file: SegmentFile, where: { offset: number; length: number }[]): Promise<void> {
    const count = where.length;
    if (this.#quarantined.has(file.name)) return;
    this.#quarantined.add(file.name);
    let copy: string | undefined = join(this.#o.dir, 'quarantine', `${file.name}.${Date.now()}`);
    // A full disk (the usual reason for a bad record) must not stop the good records' replay.
    await copyFile(file.path, copy).catch(() => {
      copy = undefined;
    });
    this.#o.metrics.checkpointCorruptRecords.inc(count);
    this.#o.logger.error(
      { segment: file.name, corruptRecords: count, ranges: where.slice(0, 10), copy },
      'checkpoint: corrupt records skipped; the segment is copied to quarantine/ for inspection (copy: undefined when that failed)',
    );
  }

  /** The directory this checkpoint holds. */
  get dir(): string {
    return this.#o.dir;
  }

  #report(): void {
    if (this.#o.reportGauges === false) return;
    const s = this.stats();
    this.#o.metrics.checkpointEvents.set(s.events);
    this.#o.metrics.checkpointBytes.set(s.bytes);
    this.#o.metrics.checkpointSegments.set(s.segments);
    this.#o.metrics.checkpointHealthy.set(s.failed ? 0 : 1);
  }
}
