/** Why a source could not be read: its code (the admin API's error code), the field at fault, a message free of secrets. */
export type SourceErrorCode =
  | 'source_unreachable'
  | 'source_unauthorized'
  | 'source_unreadable'
  | 'source_rate_limited';

export class SourceError extends Error {
  override readonly name = 'SourceError';
  readonly code: SourceErrorCode;
  /** The configuration field the problem is about (`connection`, `table`, `url`, `dataPath`, …). */
  readonly field: string;
  /** For `source_rate_limited`: when the source said to come back. */
  readonly retryAfterMs: number | undefined;

  constructor(code: SourceErrorCode, field: string, message: string, retryAfterMs?: number) {
    super(message);
    this.code = code;
    this.field = field;
    this.retryAfterMs = retryAfterMs;
  }
}

/** One record read, as the source gave it, with the keys a reader knows better than the record does. */
export interface ReadRecord {
  record: unknown;
  /** The record's cursor value as text (a table's cursor column); absent: read from the mapping's timestamp. */
  cursor?: string;
  /** The record's id as text (a table's id column); absent: read from the mapping's id path. */
  recordId?: string;
}

/** A batch (a table's rows, an API's page) and the position to commit once it is buffered. */
export interface ReadBatch {
  records: ReadRecord[];
  /** Where the next read starts; committed only after these records are buffered. */
  position: Record<string, unknown> | null;
  /** Whether more is there to read now (false: the run is done until the next interval). */
  more: boolean;
}

/** What the admin API shows of a source it checked: the fields found and how many records there are. */
export interface SourceProbe {
  fields: { name: string; type: string }[];
  estimatedRecords: number | null;
  /** The first records, as the next run would read them (nothing is committed). */
  sample: ReadBatch;
}

/** Reads one source: `next` from a committed position; `probe` for the admin API's checks. */
export interface SourceReader {
  next(position: Record<string, unknown> | null, signal: AbortSignal): Promise<ReadBatch>;
  /** Checks the source can be reached, authenticated and read; throws a {@link SourceError} otherwise. */
  probe(sampleSize: number, signal: AbortSignal): Promise<SourceProbe>;
  /** How long the last batch took from read to buffered (a table source sizes its batches by it). */
  measured?(records: number, elapsedMs: number): void;
  close(): Promise<void>;
}
