import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import type { ObjectStore } from '../archive/object-store.ts';
import { ParquetFiles } from '../archive/parquet.ts';
import type { DeadLetterStream } from '../buffer/dead-letter.ts';
import { pseudonymize } from '../events/pseudonym.ts';
import { archivesWithRows } from '../store/archives.repo.ts';
import { type SubjectColumn, subjectEventsPage } from '../store/events.repo.ts';
import type { ReadRouter } from '../store/read-replica.ts';
import { linkedSubjects } from '../store/subject-links.repo.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { type MetadataCipher, mayHoldSealedValue } from './metadata-cipher.ts';
import { isSubjectsEvent } from './subjects.ts';

export interface ExportOptions {
  pool: pg.Pool;
  /** Where reads run (a replica while it keeps up, §16); absent, on `pool`. */
  reads?: Pick<ReadRouter, 'read'> | undefined;
  store: ObjectStore;
  metrics: Metrics;
  workDir: string;
  anonymizeSecret?: string | undefined;
  /** Opens encrypted metadata values, so the subject gets them readable. */
  cipher?: MetadataCipher | undefined;
  /** Events that could not be stored, exported too (`"source":"dead_letter"`); absent: not read. */
  deadLetters?: DeadLetterStream | undefined;
  pageRows?: number;
}

/**
 * Every event held of a subject as NDJSON lines: from PostgreSQL (the read replica while it
 * keeps up; keyset pages, oldest
 * first, one short query each, so memory stays flat and no connection is held between
 * pages), then from the dead-letter stream (received but never stored; read a page at a
 * time), then from each archive object holding some (read with DuckDB a chunk at a time).
 * Each line says where it came from in `source` (`database`, `dead_letter`, `archive`).
 * The subject is the id asked for and every id linked to it (ARCHITECTURE §12): rows whose
 * user_id or anonymous_id is one of them (each row once), under the ids and, with
 * ANONYMIZE_SECRET, their HMAC pseudonyms.
 * Archives whose rows are restored into PostgreSQL are skipped (they were read there).
 * Encrypted metadata values are decrypted (with `cipher`) on the way out. With `services`
 * (the asking key is bound to them, ARCHITECTURE §11) only those services' events are listed.
 * The consumer pulls lines one at a time, so a slow client slows the reading down.
 * Yields NDJSON text, a page (up to `pageRows` lines) at a time.
 */
export async function* exportSubject(
  o: ExportOptions,
  userId: string,
  services?: readonly string[] | null,
): AsyncGenerator<string> {
  const allowed = (service: unknown) => !services || services.includes(service as string);
  const read = <T>(fn: (pool: pg.Pool) => Promise<T>): Promise<T> =>
    o.reads ? o.reads.read((target) => fn(target.pool)) : fn(o.pool);
  const subjects = await read((pool) => linkedSubjects(pool, [userId]));
  const secret = o.anonymizeSecret;
  const ids = secret ? [...subjects, ...subjects.map((s) => pseudonymize(secret, s))] : subjects;
  const page = o.pageRows ?? 1_000;
  // One id and column at a time, so each page is a range of one index; rows an earlier
  // user_id pass listed are left out of the anonymous_id pass.
  const passes: [string, SubjectColumn][] = [
    ...ids.map((id): [string, SubjectColumn] => [id, { column: 'user_id' }]),
    ...ids.map((id): [string, SubjectColumn] => [id, { column: 'anonymous_id', exceptUserIds: ids }]),
  ];
  for (const [subjectId, by] of passes) {
    let after: { ts: string; id: string; service: string } | undefined;
    for (;;) {
      const rows = await read((pool) =>
        subjectEventsPage(pool, subjectId, page, after, services ?? undefined, by),
      );
      // One write per page: per-line writes would cost more than the query.
      if (rows.length > 0) yield `${rows.map((r) => openLine(o.cipher, r.line)).join('\n')}\n`;
      o.metrics.exportRows.inc({ source: 'database' }, rows.length);
      if (rows.length < page) break;
      const last = rows[rows.length - 1] as { ts: string; id: string; service: string };
      after = { ts: last.ts, id: last.id, service: last.service };
    }
  }

  if (o.deadLetters) yield* deadLetterLines(o, o.deadLetters, new Set(subjects), allowed);

  const archives = await read((pool) => archivesWithRows(pool));
  if (archives.length === 0) return;
  const dir = join(
    o.workDir,
    `export-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`,
  );
  await mkdir(dir, { recursive: true });
  const parquet = await ParquetFiles.open(dir, '128MB');
  try {
    for (const a of archives) {
      const file = join(dir, `${a.id}.parquet`);
      await o.store.getFile(a.objectKey, file);
      for await (const rows of parquet.subjectRows(file, ids)) {
        const chunk = services ? rows.filter((row) => allowed(row.service)) : rows;
        for (const row of chunk) {
          const metadata = o.cipher ? o.cipher.open(row.metadata) : row.metadata;
          yield `${JSON.stringify({ ...row, metadata, source: 'archive' })}\n`;
        }
        o.metrics.exportRows.inc({ source: 'archive' }, chunk.length);
      }
      await rm(file, { force: true });
    }
  } finally {
    parquet.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The subject's dead-lettered events (under their own ids: buffered events are never
 * pseudonymised) as export lines, a page of the dead-letter stream at a time.
 */
async function* deadLetterLines(
  o: ExportOptions,
  dead: DeadLetterStream,
  subjects: ReadonlySet<string>,
  allowed: (service: unknown) => boolean,
): AsyncGenerator<string> {
  for await (const page of dead.pages()) {
    const lines: string[] = [];
    for (const { fields } of page) {
      const json = fields.e ?? '';
      if (!isSubjectsEvent(json, subjects)) continue;
      const event = JSON.parse(json) as Record<string, unknown>;
      if (!allowed(event.service)) continue;
      const metadata = event.metadata ?? null;
      lines.push(
        JSON.stringify({
          ...event,
          message: event.message ?? null,
          metadata: o.cipher ? o.cipher.open(metadata) : metadata,
          source: 'dead_letter',
        }),
      );
    }
    if (lines.length > 0) yield `${lines.join('\n')}\n`;
    o.metrics.exportRows.inc({ source: 'dead_letter' }, lines.length);
  }
}

/** A database export line with its encrypted metadata values opened; parsed only when it may hold one. */
function openLine(cipher: MetadataCipher | undefined, line: string): string {
  if (!cipher || !mayHoldSealedValue(line)) return line;
  const row = JSON.parse(line) as { metadata: unknown };
  return JSON.stringify({ ...row, metadata: cipher.open(row.metadata) });
}
