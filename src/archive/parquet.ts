import { mkdir } from 'node:fs/promises';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';

/**
 * Parquet files of archived events, written and read with DuckDB (in process, streaming,
 * memory-capped; spills to `workDir` beyond the cap). Rows move between PostgreSQL and
 * DuckDB as CSV files: PostgreSQL's COPY streams them out and in at full speed
 * (store/events-copy.repo.ts), and the CSV conventions both sides keep (columns in the
 * order of {@link ARCHIVE_COLUMNS}, every non-NULL text quoted, an unquoted empty field
 * meaning NULL, timestamps as UTC RFC 3339 with microseconds) keep NULL apart from '' and
 * every value exact. The SQL here is DuckDB's, run in process on files, not PostgreSQL's.
 */

/**
 * Bumped when the columns of an archive file change; recorded in every manifest.
 * 2: `key_id` (the API key that wrote the row, ARCHITECTURE §11) added last. Files of
 * version 1 have no such column and are still read (their rows restore with no key).
 * 3: `anonymous_id` (Segment's anonymousId, §12) added last; older files restore it as NULL.
 * 4: `violations` (tracking-plan violations, §14) added last; older files restore it as NULL.
 */
export const ARCHIVE_SCHEMA_VERSION = 4;

/** Archive columns as they are in the Parquet file. */
export const ARCHIVE_COLUMNS = [
  { name: 'id', type: 'VARCHAR' },
  { name: 'occurred_at', type: 'TIMESTAMPTZ' },
  { name: 'received_at', type: 'TIMESTAMPTZ' },
  { name: 'service', type: 'VARCHAR' },
  { name: 'type', type: 'VARCHAR' },
  { name: 'user_id', type: 'VARCHAR' },
  { name: 'message', type: 'VARCHAR' },
  { name: 'metadata', type: 'JSON' },
  { name: 'anonymized', type: 'BOOLEAN' },
  { name: 'key_id', type: 'VARCHAR' },
  { name: 'anonymous_id', type: 'VARCHAR' },
  { name: 'violations', type: 'JSON' },
] as const;

const lit = (path: string) => `'${path.replaceAll("'", "''")}'`;

const CSV_COLUMNS = `{${ARCHIVE_COLUMNS.map((c) => `'${c.name}': '${c.type === 'JSON' ? 'VARCHAR' : c.type}'`).join(', ')}}`;

export interface ParquetStats {
  rows: number;
  /** Earliest and latest occurred_at, ISO; undefined for an empty file. */
  minOccurredAt?: string;
  maxOccurredAt?: string;
}

export interface ArchiveKey {
  /** occurred_at as microseconds since the epoch (exact, unlike a JS Date). */
  occurredAtUs: string;
  id: string;
}

export class ParquetFiles {
  readonly #db: DuckDBInstance;
  readonly #conn: DuckDBConnection;

  private constructor(db: DuckDBInstance, conn: DuckDBConnection) {
    this.#db = db;
    this.#conn = conn;
  }

  static async open(workDir: string, memoryLimit = '512MB'): Promise<ParquetFiles> {
    await mkdir(workDir, { recursive: true });
    // Loaded on first use: DuckDB's library is large, and a process that never archives
    // (an API process, mostly) need not map it.
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(':memory:', {
      memory_limit: memoryLimit,
      threads: '2',
      temp_directory: workDir,
    });
    const conn = await db.connect();
    await conn.run("SET TimeZone = 'UTC'");
    return new ParquetFiles(db, conn);
  }

  /** CSV from PostgreSQL (`copyEventsToCsv` in store/events-copy.repo.ts) → zstd Parquet with typed columns. */
  async csvToParquet(csvPath: string, parquetPath: string): Promise<void> {
    const select = ARCHIVE_COLUMNS.map((c) => (c.type === 'JSON' ? `${c.name}::JSON AS ${c.name}` : c.name));
    await this.#conn.run(
      `COPY (SELECT ${select.join(', ')} FROM read_csv(${lit(csvPath)}, header = false, delim = ',',
         quote = '"', escape = '"', allow_quoted_nulls = false, auto_detect = false,
         strict_mode = true, columns = ${CSV_COLUMNS}))
       TO ${lit(parquetPath)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)`,
    );
  }

  /** Row count and time range, read from the file itself. */
  async stats(parquetPath: string): Promise<ParquetStats> {
    const reader = await this.#conn.runAndReadAll(
      `SELECT count(*)::BIGINT AS n,
              strftime(min(occurred_at), '%Y-%m-%dT%H:%M:%S.%fZ') AS lo,
              strftime(max(occurred_at), '%Y-%m-%dT%H:%M:%S.%fZ') AS hi
         FROM read_parquet(${lit(parquetPath)})`,
    );
    const [row] = reader.getRowObjectsJson() as {
      n: string | number;
      lo: string | null;
      hi: string | null;
    }[];
    if (!row) throw new Error('no result from the Parquet statistics query');
    return {
      rows: Number(row.n),
      ...(row.lo ? { minOccurredAt: row.lo } : {}),
      ...(row.hi ? { maxOccurredAt: row.hi } : {}),
    };
  }

  /** The primary keys of the rows in a file, `batch` at a time, in file order. */
  async *keys(parquetPath: string, batch: number): AsyncGenerator<ArchiveKey[]> {
    const result = await this.#conn.stream(
      `SELECT epoch_us(occurred_at)::VARCHAR AS us, id FROM read_parquet(${lit(parquetPath)})`,
    );
    let out: ArchiveKey[] = [];
    for (;;) {
      const chunk = await result.fetchChunk();
      if (!chunk || chunk.rowCount === 0) break;
      for (const [us, id] of chunk.getRows() as [string, string][]) {
        out.push({ occurredAtUs: us, id });
        if (out.length >= batch) {
          yield out;
          out = [];
        }
      }
    }
    if (out.length > 0) yield out;
  }

  /**
   * Parquet → CSV that PostgreSQL's `COPY … FROM STDIN WITH (FORMAT csv)` loads into a table
   * with the archive columns (NULL unquoted and empty, text always quoted).
   */
  async parquetToCsv(parquetPath: string, csvPath: string, where = 'true'): Promise<void> {
    // Files of an older schema lack the columns added since (key_id: 1, anonymous_id: 1–2, violations: 1–3).
    const keyId = await this.#columnOrNull(parquetPath, 'key_id');
    const anonymousId = await this.#columnOrNull(parquetPath, 'anonymous_id');
    const violations = await this.#columnOrNull(
      parquetPath,
      'violations',
      'violations::VARCHAR AS violations',
    );
    await this.#conn.run(
      `COPY (SELECT id, strftime(occurred_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS occurred_at,
                    strftime(received_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS received_at,
                    service, type, user_id, message, metadata::VARCHAR AS metadata, anonymized, ${keyId},
                    ${anonymousId}, ${violations}
               FROM read_parquet(${lit(parquetPath)}) WHERE ${where})
       TO ${lit(csvPath)} (FORMAT csv, HEADER false, QUOTE '"', ESCAPE '"',
                          FORCE_QUOTE (service, type, user_id, message, metadata, key_id, anonymous_id, violations))`,
    );
  }

  /** `column` (or `select`) when the file has it, else a NULL under its name (a file of an older schema). */
  async #columnOrNull(parquetPath: string, column: string, select = column): Promise<string> {
    return (await this.#hasColumn(parquetPath, column)) ? select : `NULL::VARCHAR AS ${column}`;
  }

  async #hasColumn(parquetPath: string, column: string): Promise<boolean> {
    const reader = await this.#conn.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${lit(parquetPath)})`);
    return (reader.getRowObjectsJson() as { column_name: string }[]).some((c) => c.column_name === column);
  }

  /**
   * The condition a subject's row meets: its user_id or its anonymous_id is one of `ids`
   * (files of schema 1–2 have no anonymous_id: user_id alone). Never NULL, so `NOT` of it
   * keeps every other row.
   */
  async #subjectCondition(parquetPath: string, ids: readonly string[]): Promise<string> {
    const list = ids.map(lit).join(', ');
    const byUser = `coalesce(user_id IN (${list}), false)`;
    return (await this.#hasColumn(parquetPath, 'anonymous_id'))
      ? `(${byUser} OR coalesce(anonymous_id IN (${list}), false))`
      : byUser;
  }

  /** Rows whose user_id or anonymous_id is one of `ids`. */
  async countSubject(parquetPath: string, ids: readonly string[]): Promise<number> {
    const reader = await this.#conn.runAndReadAll(
      `SELECT count(*)::BIGINT AS n FROM read_parquet(${lit(parquetPath)}) WHERE ${await this.#subjectCondition(parquetPath, ids)}`,
    );
    return Number((reader.getRowObjectsJson()[0] as { n: string | number }).n);
  }

  /** A copy of the file without the rows of `ids` (user_id or anonymous_id), same columns, order and compression. */
  async withoutSubject(src: string, dst: string, ids: readonly string[]): Promise<void> {
    await this.#conn.run(
      `COPY (SELECT * FROM read_parquet(${lit(src)}) WHERE NOT ${await this.#subjectCondition(src, ids)})
       TO ${lit(dst)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)`,
    );
  }

  /** The rows of `ids` (user_id or anonymous_id), each once, as objects in the API's event shape, a chunk at a time. */
  async *subjectRows(parquetPath: string, ids: readonly string[]): AsyncGenerator<Record<string, unknown>[]> {
    const anonymousId = await this.#columnOrNull(parquetPath, 'anonymous_id');
    const violations = await this.#columnOrNull(
      parquetPath,
      'violations',
      'violations::VARCHAR AS violations',
    );
    const result = await this.#conn.stream(
      `SELECT id, service, type, strftime(occurred_at, '%Y-%m-%dT%H:%M:%S.%gZ') AS timestamp,
              strftime(received_at, '%Y-%m-%dT%H:%M:%S.%gZ') AS "receivedAt", user_id AS "userId", message,
              metadata::VARCHAR AS metadata, ${anonymousId}, ${violations}
         FROM read_parquet(${lit(parquetPath)}) WHERE ${await this.#subjectCondition(parquetPath, ids)}
        ORDER BY occurred_at, id`,
    );
    for (;;) {
      const chunk = await result.fetchChunk();
      if (!chunk || chunk.rowCount === 0) break;
      yield (chunk.getRows() as (string | null)[][]).map(
        ([id, service, type, timestamp, receivedAt, userId, message, metadata, anonymous, flagged]) => ({
          id,
          service,
          type,
          timestamp,
          receivedAt,
          userId,
          anonymousId: anonymous ?? null,
          message,
          metadata: metadata === null || metadata === undefined ? null : (JSON.parse(metadata) as unknown),
          violations: flagged === null || flagged === undefined ? null : (JSON.parse(flagged) as unknown),
        }),
      );
    }
  }

  close(): void {
    this.#conn.closeSync();
    this.#db.closeSync();
  }
}
