import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import type { BatchOutcome, Rejection } from '../http/ingest.ts';
import {
  type BatchCounts,
  claimDueSources,
  commitSourcePosition,
  finishSourceRun,
  releaseSourceLease,
  renewSourceLease,
  type SourceRow,
} from '../store/sources.repo.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { type ReadBatch, type ReadRecord, SourceError, type SourceReader } from './errors.ts';
import { mappingOf, mapRecord, type RecordMapping } from './mapping.ts';
import { type ReaderSettings, readerFor } from './readers.ts';
import type { SourceSecrets } from './secrets.ts';
import { SourceConfig, scrub, secretStrings } from './settings.ts';

/**
 * Source runners inside a `work` process (ARCHITECTURE §15). Every SOURCE_POLL_MS the
 * process takes the lease of sources that are due (up to SOURCE_RUNNERS at once); a lease
 * is renewed while the run lasts and runs out SOURCE_LEASE_TTL_S after its holder stops
 * renewing it (kill -9, a stall), when another process takes the source over. A run reads
 * batches from the committed position; each batch goes through the same checks as HTTP
 * ingest into the same stream, and only then is its position committed, fenced by the
 * lease: a runner that lost its lease cannot move the cursor. A failed run is retried with
 * backoff; its error (secrets scrubbed) is kept in the source's state and counted.
 */

/** Buffers a batch of a source's event inputs as HTTP ingest does; `rejected` holds those refused before. */
export type SourceIngest = (
  source: { id: string; service: string },
  inputs: { index: number; value: unknown }[],
  rejected: Rejection[],
) => Promise<BatchOutcome>;

export interface SourceRunnersOptions {
  pool: pg.Pool;
  secrets: SourceSecrets;
  ingest: SourceIngest;
  logger: Logger;
  metrics: Metrics;
  config: ReaderSettings & Pick<Config, 'SOURCE_RUNNERS' | 'SOURCE_LEASE_TTL_S' | 'SOURCE_POLL_MS'>;
  /** This process's name in leases (host and pid). */
  holder: string;
}

const MAX_BACKOFF_MS = 300_000;
/** What becomes of the records a source reads (`tributary_source_records_total{outcome}`). */
const RECORD_OUTCOMES = ['read', 'accepted', 'duplicate', 'rejected', 'skipped'] as const;

/** The wait after the `failures`-th failure in a row: 1 s doubling to 5 min, ±20 %. */
export function backoffMs(failures: number): number {
  const base = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(failures, 20));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * A batch's records as event inputs, by index; a record that cannot become one is refused as
 * `invalid_event` naming the field at fault. `receivedAt` times records whose mapping names no time.
 */
export function mapBatch(
  records: readonly ReadRecord[],
  mapping: RecordMapping,
  receivedAt?: string,
): { inputs: { index: number; value: unknown }[]; rejected: Rejection[] } {
  const inputs: { index: number; value: unknown }[] = [];
  const rejected: Rejection[] = [];
  records.forEach((r, index) => {
    const mapped = mapRecord(r.record, mapping, { cursor: r.cursor, recordId: r.recordId }, receivedAt);
    if (mapped.ok) inputs.push({ index, value: mapped.input });
    else
      rejected.push({
        index,
        code: 'invalid_event',
        message: 'the record cannot become an event',
        details: [mapped.problem],
      });
  });
  return { inputs, rejected };
}

/** The last record refused, as the source's state shows it: why, never its values. */
const rejectionOf = (r: Rejection): Record<string, unknown> => ({
  at: new Date().toISOString(),
  code: r.code,
  message: r.message,
  ...(r.details ? { details: r.details } : {}),
});

export class SourceRunners {
  readonly #o: SourceRunnersOptions;
  readonly #running = new Map<string, Promise<void>>();
  readonly #stopping = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #pollFailed = false;

  constructor(opts: SourceRunnersOptions) {
    this.#o = opts;
  }

  /** Starts looking for due sources (not when SOURCE_RUNNERS is 0). */
  start(): void {
    if (this.#o.config.SOURCE_RUNNERS === 0) return;
    const tick = () => {
      this.#polling = this.#poll().finally(() => {
        if (!this.#stopping.signal.aborted) this.#timer = setTimeout(tick, this.#o.config.SOURCE_POLL_MS);
      });
    };
    tick();
  }

  /** Sources running here now (their ids). */
  get running(): string[] {
    return [...this.#running.keys()];
  }

  async #poll(): Promise<void> {
    const { pool, holder, config, logger } = this.#o;
    const free = config.SOURCE_RUNNERS - this.#running.size;
    if (free <= 0) return;
    let rows: SourceRow[];
    try {
      rows = await claimDueSources(pool, holder, config.SOURCE_LEASE_TTL_S * 1000, free, this.running);
      this.#pollFailed = false;
    } catch (err) {
      // The database is down: sources wait (ingest does not); said once per outage.
      if (!this.#pollFailed) logger.warn({ err }, 'cannot look for due sources; retrying');
      this.#pollFailed = true;
      return;
    }
    for (const row of rows) {
      const run = this.#run(row).finally(() => this.#running.delete(row.id));
      this.#running.set(row.id, run);
    }
  }

  /** Stops looking, ends every run at its next batch boundary and gives their leases back. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    clearTimeout(this.#timer);
    await this.#polling;
    await Promise.all(this.#running.values());
  }

  async #run(row: SourceRow): Promise<void> {
    const { pool, config, metrics } = this.#o;
    const holder = row.leaseHolder as string;
    const ttlMs = config.SOURCE_LEASE_TTL_S * 1000;
    const log = this.#o.logger.child({ sourceId: row.id, source: row.name, kind: row.kind });
    const labels = { source: row.name, kind: row.kind };
    for (const outcome of RECORD_OUTCOMES) metrics.sourceRecords.inc({ ...labels, outcome }, 0);
    for (const outcome of ['ok', 'failed']) metrics.sourceRuns.inc({ ...labels, outcome }, 0);
    const lease = new AbortController();
    const signal = AbortSignal.any([this.#stopping.signal, lease.signal]);
    let paused = false;
    // Renewed on every commit too; this covers a slow read or a long Retry-After.
    const heartbeat = setInterval(() => {
      renewSourceLease(pool, row.id, holder, ttlMs).then(
        (check) => {
          if (!check.held) lease.abort();
          paused ||= check.paused;
        },
        () => {},
      );
    }, ttlMs / 3);
    let reader: SourceReader | undefined;
    let secrets: string[] = [];
    try {
      const opened = this.#o.secrets.open(row.id, row.secrets);
      secrets = secretStrings(opened);
      const source = SourceConfig.parse({
        ...row.settings,
        ...opened,
        kind: row.kind,
        name: row.name,
        service: row.service,
      });
      reader = readerFor(source, config);
      if (!reader) return;
      log.debug({ position: row.position }, 'source run started');
      const mapping = mappingOf(row.id, source);
      let position = row.position;
      // The next batch is read while this one is buffered and committed: reading and
      // buffering overlap, and the order of commits does not change.
      let next: Promise<ReadBatch> | undefined = reader.next(position, signal);
      while (next && !signal.aborted && !paused) {
        const started = performance.now();
        const batch: ReadBatch = await next;
        next = batch.more ? reader.next(batch.position, signal) : undefined;
        // Left unread when the loop ends early (a pause, a lost lease, a stop).
        next?.catch(() => {});
        const { counts, lastRejection } = await this.#buffer(row, mapping, batch);
        reader.measured?.(batch.records.length, performance.now() - started);
        const check = await commitSourcePosition(
          pool,
          row.id,
          holder,
          ttlMs,
          batch.position,
          counts,
          lastRejection,
        );
        if (!check.held) {
          lease.abort();
          break;
        }
        for (const [outcome, n] of Object.entries(counts)) {
          if (n > 0) metrics.sourceRecords.inc({ ...labels, outcome }, n);
        }
        position = batch.position;
        paused ||= check.paused;
        if (!batch.more) break;
      }
      if (lease.signal.aborted) {
        log.warn(
          'source lease lost (the source was changed, or this runner stalled past SOURCE_LEASE_TTL_S); its run stopped',
        );
      } else if (this.#stopping.signal.aborted) {
        await releaseSourceLease(pool, row.id, holder);
      } else {
        await finishSourceRun(pool, row.id, holder, {
          ok: true,
          delayMs: source.kind === 'webhook' ? 0 : source.intervalSeconds * 1000,
        });
        metrics.sourceRuns.inc({ ...labels, outcome: 'ok' });
        metrics.sourceFailures.set(labels, 0);
        metrics.sourceLastSuccess.set(labels, Date.now() / 1000);
        log.debug({ position }, 'source run finished');
      }
    } catch (err) {
      await this.#failed(row, err, secrets, lease.signal.aborted, log);
    } finally {
      clearInterval(heartbeat);
      await reader?.close().catch(() => {});
    }
  }

  /** Maps a batch's records and buffers the events; what became of each record. */
  async #buffer(
    row: SourceRow,
    mapping: RecordMapping,
    batch: ReadBatch,
  ): Promise<{ counts: BatchCounts; lastRejection: Record<string, unknown> | undefined }> {
    const { inputs, rejected } = mapBatch(batch.records, mapping);
    const outcome =
      batch.records.length === 0
        ? { accepted: 0, duplicates: 0, skipped: 0, ids: [], rejected: [] }
        : await this.#o.ingest({ id: row.id, service: row.service }, inputs, rejected);
    const last = outcome.rejected[outcome.rejected.length - 1];
    return {
      counts: {
        read: batch.records.length,
        accepted: outcome.accepted,
        duplicate: outcome.duplicates,
        rejected: outcome.rejected.length,
        skipped: outcome.skipped,
      },
      lastRejection: last ? rejectionOf(last) : undefined,
    };
  }

  /** Records a failed run (secrets scrubbed from its message) and when to try again. */
  async #failed(
    row: SourceRow,
    err: unknown,
    secrets: string[],
    leaseLost: boolean,
    log: Logger,
  ): Promise<void> {
    const { pool, metrics } = this.#o;
    const holder = row.leaseHolder as string;
    if (leaseLost) return;
    if (this.#stopping.signal.aborted) {
      await releaseSourceLease(pool, row.id, holder).catch(() => {});
      return;
    }
    const labels = { source: row.name, kind: row.kind };
    const code = err instanceof SourceError ? err.code : ((err as { code?: string }).code ?? 'source_failed');
    const message = scrub(err instanceof Error ? err.message : String(err), secrets);
    const delayMs =
      err instanceof SourceError && err.retryAfterMs !== undefined
        ? err.retryAfterMs
        : backoffMs(row.failures);
    metrics.sourceRuns.inc({ ...labels, outcome: 'failed' });
    metrics.sourceErrors.inc({ ...labels, code });
    metrics.sourceFailures.set(labels, row.failures + 1);
    // Only the scrubbed message: a driver's error object can carry the connection string.
    log.warn({ code, error: message, failures: row.failures + 1, retryInMs: delayMs }, 'source run failed');
    await finishSourceRun(pool, row.id, holder, { ok: false, delayMs, error: `${code}: ${message}` }).catch(
      (e: unknown) => log.warn({ err: e }, 'source run state not recorded'),
    );
  }
}
