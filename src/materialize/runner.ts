import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { Logger } from 'pino';
import { type ArchiveStoreConfig, createObjectStore, type ObjectStore } from '../archive/object-store.ts';
import type { Config } from '../config.ts';
import { loadAllEvents, loadFeedBatch } from '../store/mat-batch.repo.ts';
import { clearCatalog, readCatalog } from '../store/mat-catalog.repo.ts';
import { trackChanges } from '../store/mat-changes.repo.ts';
import { createFixedTables, dropSchema, swapSchema } from '../store/mat-ddl.ts';
import { recountDirtyDays } from '../store/mat-upsert.repo.ts';
import {
  beginBatch,
  claimMaterializations,
  commitPosition,
  getMaterialization,
  lagOf,
  lockForBatch,
  type MaterializationRow,
  pruneFeed,
  recordFailure,
  recordSynced,
  releaseMaterializations,
} from '../store/materializations.repo.ts';
import { errorSummary } from '../telemetry/log-errors.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { type ArchiveAccess, loadArchivedEvents } from './archived.ts';
import { applyBatch } from './build.ts';
import { openDestination } from './destinations.ts';
import { buildSchema, localSchema, MaterializationSpec, shadowOf } from './spec.ts';
import { syncOnce } from './sync.ts';

/**
 * Materialisation runners inside a `work` process (ARCHITECTURE §17). Every
 * MATERIALIZE_POLL_MS the process takes (or renews) the lease of every materialisation no
 * live process holds, and brings each up to date: a rebuild first when one is asked for (or
 * it was never built), then feed batches until none is left. A batch is one transaction that
 * locks the materialisation's row (fenced by the lease), writes every table and moves the
 * feed position: killed anywhere, nothing of it stays, and the next holder applies it again.
 */

export interface MaterializersOptions {
  pool: pg.Pool;
  logger: Logger;
  metrics: Metrics;
  config: Pick<
    Config,
    | 'MATERIALIZE_RUNNERS'
    | 'MATERIALIZE_LEASE_TTL_S'
    | 'MATERIALIZE_POLL_MS'
    | 'MATERIALIZE_BATCH_ROWS'
    | 'DATABASE_URL'
    | 'ARCHIVE_WORK_DIR'
  > &
    ArchiveStoreConfig;
  /** This process's name in leases (host and pid). */
  holder: string;
  /** The archive, for rebuilds asked to read archived months too (without it, such a rebuild fails). */
  archive?: ArchiveAccess | undefined;
}

/** Feed rows deleted per pass once every materialisation has passed them. */
const PRUNE_ROWS = 50_000;
const PRUNE_EVERY_MS = 5_000;
const MAX_BACKOFF_MS = 60_000;
/** Under a steady feed, the days batches touched are recounted this often. */
const RECOUNT_EVERY_MS = 2_000;

type Outcome = 'applied' | 'idle' | 'lost';

export class Materializers {
  readonly #o: MaterializersOptions;
  readonly #stopping = new AbortController();
  readonly #backoff = new Map<string, { failures: number; until: number }>();
  readonly #syncBackoff = new Map<string, { failures: number; until: number }>();
  readonly #seen = new Set<string>();
  readonly #recountedAt = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #loop: Promise<void> | undefined;
  #claimedAt = 0;
  #prunedAt = 0;
  /** The archive store, made when a Parquet destination first needs it. */
  #store: ObjectStore | undefined;

  constructor(opts: MaterializersOptions) {
    this.#o = opts;
  }

  start(): void {
    if (this.#o.config.MATERIALIZE_RUNNERS === 0) return;
    const tick = () => {
      // A pass handles its own failures; this is the last guard, so the process never dies of one.
      this.#loop = this.#pass()
        .catch((err: unknown) =>
          this.#o.logger.error({ err: errorSummary(err) }, 'materialisation pass failed'),
        )
        .finally(() => {
          if (!this.#stopping.signal.aborted)
            this.#timer = setTimeout(tick, this.#o.config.MATERIALIZE_POLL_MS);
        });
    };
    tick();
  }

  /** Stops after the batch under way (committed or rolled back) and gives the leases back. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    clearTimeout(this.#timer);
    await this.#loop;
    await releaseMaterializations(this.#o.pool, this.#o.holder).catch(() => {});
    await this.#store?.close().catch(() => {});
  }

  async #pass(): Promise<void> {
    const { pool, logger } = this.#o;
    let names: string[];
    try {
      names = await this.#claim();
      if (performance.now() - this.#prunedAt > PRUNE_EVERY_MS) {
        this.#prunedAt = performance.now();
        await pruneFeed(pool, PRUNE_ROWS);
      }
    } catch (err) {
      logger.warn({ err: errorSummary(err) }, 'materialisations: cannot take leases');
      return;
    }
    for (const name of names) {
      if (this.#stopping.signal.aborted) return;
      const wait = this.#backoff.get(name);
      if (wait && performance.now() < wait.until) continue;
      await this.#catchUp(name);
    }
  }

  async #claim(): Promise<string[]> {
    const { pool, holder, config, metrics } = this.#o;
    const names = await claimMaterializations(pool, holder, config.MATERIALIZE_LEASE_TTL_S);
    this.#claimedAt = performance.now();
    for (const name of names) {
      if (this.#seen.has(name)) continue;
      this.#seen.add(name);
      for (const counter of [metrics.matEvents, metrics.matErrors, metrics.matConflicts])
        counter.inc({ materialization: name }, 0);
    }
    return names;
  }

  /** Batches until the feed is drained, renewing the lease on the way. */
  async #catchUp(name: string): Promise<void> {
    const { config, metrics, logger, pool } = this.#o;
    for (;;) {
      if (this.#stopping.signal.aborted) return;
      let outcome: Outcome;
      try {
        if (performance.now() - this.#claimedAt > (config.MATERIALIZE_LEASE_TTL_S * 1000) / 3)
          await this.#claim();
        outcome = await this.#step(name);
        this.#backoff.delete(name);
      } catch (err) {
        const failures = (this.#backoff.get(name)?.failures ?? 0) + 1;
        const ms = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures, 10));
        this.#backoff.set(name, { failures, until: performance.now() + ms });
        metrics.matErrors.inc({ materialization: name });
        logger.warn(
          { materialization: name, err: errorSummary(err), retryInMs: ms },
          'materialisation batch failed',
        );
        await recordFailure(pool, name, err instanceof Error ? err.message : String(err)).catch(() => {});
        return;
      }
      if (outcome === 'idle') await this.#syncSafely(name);
      if (outcome !== 'applied') return;
    }
  }

  /** A destination that fails backs off on its own: the staging schema goes on being built. */
  async #syncSafely(name: string): Promise<void> {
    const { metrics, logger, pool } = this.#o;
    const wait = this.#syncBackoff.get(name);
    if (wait && performance.now() < wait.until) return;
    try {
      await this.#sync(name);
      if (wait) await recordSynced(pool, name);
      this.#syncBackoff.delete(name);
    } catch (err) {
      const failures = (wait?.failures ?? 0) + 1;
      const ms = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures, 10));
      this.#syncBackoff.set(name, { failures, until: performance.now() + ms });
      metrics.matErrors.inc({ materialization: name });
      logger.warn(
        { materialization: name, err: errorSummary(err), retryInMs: ms },
        'materialisation destination sync failed',
      );
      await recordFailure(
        pool,
        name,
        `destination: ${err instanceof Error ? err.message : String(err)}`,
      ).catch(() => {});
    }
  }

  /** One batch (or a rebuild) of one materialisation. */
  async #step(name: string): Promise<Outcome> {
    const { pool, holder } = this.#o;
    const client = await pool.connect();
    try {
      await beginBatch(client);
      const row = await lockForBatch(client, name, holder);
      if (!row) {
        await client.query('ROLLBACK');
        return 'lost';
      }
      const spec = MaterializationSpec.parse(row.spec);
      const schema = buildSchema(name, spec);
      if (row.rebuildRequestedAt !== null || row.cursorXid === null) {
        // A rebuild needs one snapshot for its read and its position: a transaction of its own.
        await client.query('ROLLBACK');
        await beginBatch(client, true);
        const again = await lockForBatch(client, name, holder);
        if (!again) {
          await client.query('ROLLBACK');
          return 'lost';
        }
        await this.#rebuild(client, again, spec, schema);
        await client.query('COMMIT');
        return 'applied';
      }
      const applied = await this.#feedBatch(client, row, spec, schema);
      await client.query(applied ? 'COMMIT' : 'ROLLBACK');
      if (!applied) this.#o.metrics.matLag.set({ materialization: name }, 0);
      return applied ? 'applied' : 'idle';
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async #feedBatch(
    client: pg.PoolClient,
    row: MaterializationRow,
    spec: MaterializationSpec,
    schema: string,
  ): Promise<boolean> {
    const { config, metrics, pool } = this.#o;
    const from = { xid: row.cursorXid ?? '0', seq: row.cursorSeq };
    const batch = await loadFeedBatch(client, spec.services ?? null, from, config.MATERIALIZE_BATCH_ROWS);
    const idle = batch.rows === 0 || batch.next === null;
    if (batch.next !== null && !idle) {
      const catalog = await readCatalog(client, row.name);
      const result = await applyBatch(client, row.name, spec, schema, catalog, 'feed');
      await commitPosition(client, row.name, batch.next, batch.rows, batch.newest);
      this.#count(row.name, batch.rows, result);
    }
    // Touched days are recounted when the feed is drained, and every RECOUNT_EVERY_MS under load.
    const last = this.#recountedAt.get(row.name) ?? 0;
    if (idle || performance.now() - last > RECOUNT_EVERY_MS) {
      const days = await recountDirtyDays(client, row.name, schema);
      this.#recountedAt.set(row.name, performance.now());
      if (days > 0) metrics.matRows.inc({ materialization: row.name, table: 'daily_counts' }, days);
      if (idle) return days > 0;
    }
    metrics.matLag.set({ materialization: row.name }, await lagOf(pool, batch.next ?? from).catch(() => 0));
    return true;
  }

  /** Builds every table again into a shadow schema, then swaps it in: all in this transaction. */
  async #rebuild(
    client: pg.PoolClient,
    row: MaterializationRow,
    spec: MaterializationSpec,
    schema: string,
  ): Promise<void> {
    const started = performance.now();
    const shadow = shadowOf(schema);
    const catalog = await readCatalog(client, row.name);
    await dropSchema(client, shadow);
    await createFixedTables(client, shadow);
    const loaded = await loadAllEvents(client, spec.services ?? null);
    if (row.rebuildArchivedFrom !== null) {
      loaded.rows += await loadArchivedEvents(client, this.#o.archive, {
        name: row.name,
        from: row.rebuildArchivedFrom,
        services: spec.services ?? null,
        logger: this.#o.logger,
      });
    }
    await clearCatalog(client, row.name);
    const result = await applyBatch(client, row.name, spec, shadow, catalog, 'rebuild');
    await swapSchema(client, schema, shadow);
    // A staging schema records its changes for the destination from now on (a new generation).
    if (localSchema(spec) === null) await trackChanges(client, schema);
    await commitPosition(
      client,
      row.name,
      loaded.next,
      loaded.rows,
      loaded.newest,
      row.rebuildRequestedExact,
      row.rebuildArchivedFrom,
    );
    this.#count(row.name, loaded.rows, result);
    this.#o.logger.info(
      { materialization: row.name, events: loaded.rows, ms: Math.round(performance.now() - started) },
      'materialisation rebuilt',
    );
  }

  /**
   * Brings an outside destination up to date with the staging schema, a sync at a time until
   * none is left (renewing the lease on the way). Nothing to do for a schema of this database.
   */
  async #sync(name: string): Promise<void> {
    const { pool, config, logger } = this.#o;
    const row = await getMaterialization(pool, name);
    if (!row) return;
    const spec = MaterializationSpec.parse(row.spec);
    if (localSchema(spec) !== null) return;
    if (spec.destination.kind === 'parquet' && !this.#o.archive) this.#store ??= createObjectStore(config);
    const destination = openDestination(spec.destination, {
      store: this.#o.archive?.store ?? this.#store,
      workDir: config.ARCHIVE_WORK_DIR,
    });
    try {
      for (;;) {
        if (this.#stopping.signal.aborted) return;
        if (performance.now() - this.#claimedAt > (config.MATERIALIZE_LEASE_TTL_S * 1000) / 3)
          if (!(await this.#claim()).includes(name)) return;
        const started = performance.now();
        const result = await syncOnce({
          pool,
          name,
          databaseUrl: config.DATABASE_URL,
          schema: buildSchema(name, spec),
          destination,
          workDir: config.ARCHIVE_WORK_DIR,
          limit: Math.max(config.MATERIALIZE_BATCH_ROWS * 4, 1_000),
        });
        if (result.changes > 0 || result.full)
          logger.debug(
            {
              materialization: name,
              destination: destination.location,
              ...result,
              ms: Math.round(performance.now() - started),
            },
            'materialisation synced',
          );
        if (!result.more) return;
      }
    } finally {
      await destination.close();
    }
  }

  #count(name: string, events: number, result: { rows: Record<string, number>; conflicts: number }): void {
    const { metrics } = this.#o;
    metrics.matEvents.inc({ materialization: name }, events);
    metrics.matConflicts.inc({ materialization: name }, result.conflicts);
    for (const [table, n] of Object.entries(result.rows)) {
      if (n > 0) metrics.matRows.inc({ materialization: name, table }, n);
    }
  }
}
