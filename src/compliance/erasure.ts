import { hostname } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { ObjectStore } from '../archive/object-store.ts';
import { type BufferKeys, CONSUMER_GROUP } from '../buffer/keys.ts';
import { partitionFor } from '../buffer/partition.ts';
import type { RedisLike } from '../buffer/redis-client.ts';
import { findNamed } from '../buffer/redis-reply.ts';
import type { WorkerStatusBoard } from '../buffer/worker-status.ts';
import { pseudonymize } from '../retention/policy.ts';
import { RetentionBusyError, RunLease } from '../retention/runs.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { inSpan } from '../telemetry/tracing.ts';
import { eraseFromArchives } from './archive-erasure.ts';
import type { SubjectRegistry } from './subjects.ts';

export interface ErasureOptions {
  pool: pg.Pool;
  redis: RedisLike;
  keys: BufferKeys;
  store: ObjectStore;
  subjects: SubjectRegistry;
  workers: WorkerStatusBoard;
  logger: Logger;
  metrics: Metrics;
  workDir: string;
  batchRows: number;
  /** ANONYMIZE_SECRET: pseudonymised rows are found through the same HMAC. */
  anonymizeSecret?: string | undefined;
  /** A request whose runner stopped reporting progress this long ago is taken over. */
  staleMs?: number;
}

export interface DsarStatus {
  requestId: string;
  userId: string;
  status: 'pending' | 'running' | 'completed' | 'failed';
  requestedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  deleted: { database: number; buffer: number; checkpoint: number; archive: number };
  archivesRewritten: number;
  error: string | null;
}

const STALE_MS = 60_000;

/**
 * Erasure of a data subject, as a resumable background job. The request is recorded and
 * announced to every process first (workers then drop the subject's buffered events
 * received before it); the job then deletes the subject's rows (under their id and its
 * HMAC pseudonym) in batches, waits until every entry that was in the buffer at the time
 * has been through a worker and every checkpoint is replayed, rewrites each archive
 * object holding the subject's rows, and sweeps the database once more. Every step is
 * idempotent, so a job that dies is simply run again by any process.
 */
export class ErasureService {
  readonly #o: ErasureOptions;
  readonly #holder = `${hostname()}-${process.pid}`;
  readonly #running = new Set<string>();
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: ErasureOptions) {
    this.#o = opts;
  }

  async request(userId: string, keyId: string | null): Promise<string> {
    const { pool, redis, keys, subjects } = this.#o;
    const stream = keys.stream(partitionFor(userId, keys.partitions));
    const last = (await redis.xrevrange(stream, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0';
    const { rows } = await pool.query<{ id: string; at: number }>(
      `INSERT INTO dsar_requests (kind, user_id, status, key_id, progress)
       VALUES ('erasure', $1, 'pending', $2, jsonb_build_object('bufferHorizon', $3::text))
       RETURNING id, (extract(epoch FROM requested_at) * 1000)::float8 AS at`,
      [userId, keyId, last],
    );
    const { id, at } = rows[0] as { id: string; at: number };
    await subjects.publish({ op: 'erasure', userId, requestId: id, at: Number(at) });
    this.#o.metrics.dsarRequests.inc({ kind: 'erasure' });
    void this.run(id);
    return id;
  }

  /** The request as recorded, with the drops workers counted so far (they go on after completion). */
  async status(id: string): Promise<DsarStatus | undefined> {
    const { rows } = await this.#o.pool.query<DsarStatus>(
      `SELECT id AS "requestId", user_id AS "userId", status, requested_at AS "requestedAt", started_at AS "startedAt",
              finished_at AS "finishedAt", archives_rewritten AS "archivesRewritten", error,
              json_build_object('database', deleted_database, 'buffer', deleted_buffer,
                                'checkpoint', deleted_checkpoint, 'archive', deleted_archive) AS deleted
         FROM dsar_requests WHERE id = $1 AND kind = 'erasure'`,
      [id],
    );
    const found = rows[0];
    if (!found) return undefined;
    const dropped = await this.#o.redis.hgetall(this.#o.keys.dsarDropped(id)).catch(() => ({}));
    const counted = dropped as Record<string, string | undefined>;
    found.deleted.buffer = Math.max(found.deleted.buffer, Number(counted.buffer ?? 0));
    found.deleted.checkpoint = Math.max(found.deleted.checkpoint, Number(counted.checkpoint ?? 0));
    return found;
  }

  /** Picks up pending requests and those whose runner died, every few seconds. */
  startPolling(everyMs = 5_000): void {
    const tick = async () => {
      const { rows } = await this.#o.pool.query<{ id: string }>(
        `SELECT id FROM dsar_requests
          WHERE status = 'pending' OR (status = 'running' AND heartbeat_at < now() - $1::int * interval '1 ms')
          ORDER BY requested_at LIMIT 10`,
        [this.#o.staleMs ?? STALE_MS],
      );
      for (const r of rows) await this.run(r.id);
    };
    this.#timer = setInterval(() => void tick().catch(() => {}), everyMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Runs (or resumes) one request if no live runner has it. Never throws. */
  async run(id: string): Promise<void> {
    if (this.#running.has(id)) return;
    this.#running.add(id);
    const { pool, logger } = this.#o;
    let heartbeat: NodeJS.Timeout | undefined;
    try {
      const { rows } = await pool.query<{ user_id: string; progress: Record<string, unknown>; at: number }>(
        `UPDATE dsar_requests SET status = 'running', started_at = coalesce(started_at, now()), heartbeat_at = now()
          WHERE id = $1 AND (status = 'pending'
                OR (status = 'running' AND heartbeat_at < now() - $2::int * interval '1 ms'))
        RETURNING user_id, progress, (extract(epoch FROM requested_at) * 1000)::float8 AS at`,
        [id, this.#o.staleMs ?? STALE_MS],
      );
      const claimed = rows[0];
      if (!claimed) return;
      heartbeat = setInterval(
        () =>
          void pool
            .query(`UPDATE dsar_requests SET heartbeat_at = now() WHERE id = $1`, [id])
            .catch(() => {}),
        Math.min(5_000, (this.#o.staleMs ?? STALE_MS) / 3),
      );
      heartbeat.unref();
      logger.info({ requestId: id }, 'erasure started');
      await inSpan('dsar.erasure', { attributes: { 'tributary.dsar_request': id } }, () =>
        this.#erase(id, claimed.user_id, claimed.progress),
      );
      logger.info({ requestId: id }, 'erasure completed');
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      logger.warn({ requestId: id, err: message }, 'erasure paused; it will be resumed');
      // Left `running`: the heartbeat stops, and a poller takes it over after STALE_MS.
      await pool
        .query(`UPDATE dsar_requests SET error = $2 WHERE id = $1 AND status = 'running'`, [id, message])
        .catch(() => {});
    } finally {
      clearInterval(heartbeat);
      this.#running.delete(id);
    }
  }

  #subjectIds(userId: string): string[] {
    const secret = this.#o.anonymizeSecret;
    return secret ? [userId, pseudonymize(secret, userId)] : [userId];
  }

  async #erase(id: string, userId: string, progress: Record<string, unknown>): Promise<void> {
    const { pool, metrics } = this.#o;
    const ids = this.#subjectIds(userId);
    await this.#deleteRows(id, ids);
    await this.#waitForBuffer(userId, String(progress.bufferHorizon ?? '0-0'));
    await this.#waitForCheckpoints();
    const archive = await this.#withRetentionLease(() =>
      eraseFromArchives({
        pool,
        store: this.#o.store,
        requestId: id,
        subjectIds: ids,
        workDir: join(this.#o.workDir, `erasure-${id}`),
        logger: this.#o.logger,
      }),
    );
    // Rows an in-flight batch wrote meanwhile.
    await this.#deleteRows(id, ids);
    const dropped = await this.#o.redis.hgetall(this.#o.keys.dsarDropped(id));
    const buffer = Number(dropped.buffer ?? 0);
    const checkpoint = Number(dropped.checkpoint ?? 0);
    await pool.query(
      `UPDATE dsar_requests SET status = 'completed', finished_at = now(), error = NULL,
              deleted_buffer = $2, deleted_checkpoint = $3
        WHERE id = $1`,
      [id, buffer, checkpoint],
    );
    metrics.dsarRowsErased.inc({ place: 'buffer' }, buffer);
    metrics.dsarRowsErased.inc({ place: 'checkpoint' }, checkpoint);
    metrics.dsarRowsErased.inc({ place: 'archive' }, archive.rows);
    await this.#o.subjects.publish({ op: 'erasure_done', userId, requestId: id });
  }

  async #deleteRows(id: string, ids: string[]): Promise<void> {
    const { pool, batchRows, metrics } = this.#o;
    for (;;) {
      // Rows and their count go in one statement, so a job killed between batches
      // neither loses nor double-counts a batch.
      const { rows } = await pool.query<{ n: number }>(
        `WITH gone AS (
           DELETE FROM events WHERE (occurred_at, id) IN (
             SELECT occurred_at, id FROM events WHERE user_id = ANY($1::text[]) LIMIT $2)
           RETURNING 1)
         UPDATE dsar_requests SET deleted_database = deleted_database + (SELECT count(*) FROM gone)
          WHERE id = $3 RETURNING (SELECT count(*) FROM gone)::int AS n`,
        [ids, batchRows, id],
      );
      const n = rows[0]?.n ?? 0;
      if (n === 0) return;
      metrics.dsarRowsErased.inc({ place: 'database' }, n);
    }
  }

  /**
   * Waits until every entry that was in the subject's partition stream when the request
   * was made has been delivered and acknowledged (workers drop the subject's ones).
   */
  async #waitForBuffer(userId: string, horizon: string): Promise<void> {
    const { redis, keys } = this.#o;
    const stream = keys.stream(partitionFor(userId, keys.partitions));
    const after = (a: string, b: string) => {
      const [am, as] = a.split('-').map(Number) as [number, number];
      const [bm, bs] = b.split('-').map(Number) as [number, number];
      return am > bm || (am === bm && as >= bs);
    };
    for (;;) {
      const groups = (await redis.xinfo('GROUPS', stream).catch(() => [])) as unknown[][];
      const group = findNamed(groups, CONSUMER_GROUP);
      const delivered = String(group?.['last-delivered-id'] ?? '0-0');
      const pending = (await redis
        .xpending(stream, CONSUMER_GROUP, '-', horizon, 1)
        .catch(() => [])) as unknown[];
      if ((horizon === '0-0' || after(delivered, horizon)) && pending.length === 0) return;
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Waits until no live worker holds checkpointed events (they are replayed through the same filter). */
  async #waitForCheckpoints(): Promise<void> {
    for (;;) {
      const live = await this.#o.workers.live();
      if (live.every((w) => w.checkpoint.events === 0)) return;
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** Runs `fn` holding the retention lease, so no pass archives the subject's rows meanwhile. */
  async #withRetentionLease<T>(fn: () => Promise<T>): Promise<T> {
    for (;;) {
      let lease: RunLease;
      try {
        lease = await RunLease.acquire(this.#o.pool, 'erasure', this.#holder, STALE_MS);
      } catch (err) {
        if (!(err instanceof RetentionBusyError)) throw err;
        await new Promise((r) => setTimeout(r, 1_000));
        continue;
      }
      try {
        const result = await fn();
        await lease.finish('completed');
        return result;
      } catch (err) {
        await lease.finish('failed', err instanceof Error ? err.message : String(err)).catch(() => {});
        throw err;
      }
    }
  }
}
