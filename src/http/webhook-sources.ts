import type pg from 'pg';
import type { Logger } from 'pino';
import { mappingOf, type RecordMapping } from '../sources/mapping.ts';
import type { SourceSecrets } from '../sources/secrets.ts';
import { SourceConfig, type WebhookSourceConfig } from '../sources/settings.ts';
import { addWebhookDeliveries, type BatchCounts, getSource } from '../store/sources.repo.ts';
import { errors } from './errors.ts';

/** A webhook source as its route needs it: configuration with its secret, and its mapping. */
export interface WebhookTarget {
  id: string;
  name: string;
  service: string;
  paused: boolean;
  config: WebhookSourceConfig;
  mapping: RecordMapping;
}

const TTL_MS = 5_000;
const FLUSH_MS = 1_000;

/** What became of a delivery that passed its signature check. */
export type DeliveryOutcome = 'accepted' | 'duplicate' | 'skipped' | 'rejected';

const noCounts = (): BatchCounts => ({ read: 0, accepted: 0, duplicate: 0, rejected: 0, skipped: 0 });
const MAX_ENTRIES = 10_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Webhook sources by id, cached for 5 s per API process (a delivery costs no query), so a
 * change (a new secret, a pause, a delete) applies everywhere within 5 s. While the database
 * is unreachable a source seen before keeps receiving from the cache: deliveries go on.
 */
export class WebhookSources {
  readonly #pool: pg.Pool;
  readonly #secrets: SourceSecrets;
  readonly #logger: Logger;
  readonly #cache = new Map<string, { target: WebhookTarget | null; at: number }>();
  readonly #loading = new Map<string, Promise<WebhookTarget | null>>();

  readonly #counts = new Map<string, { counts: BatchCounts; lastRejection?: Record<string, unknown> }>();
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: { pool: pg.Pool; secrets: SourceSecrets; logger: Logger }) {
    this.#pool = opts.pool;
    this.#secrets = opts.secrets;
    this.#logger = opts.logger;
  }

  /**
   * Counts a delivery in the source's state (`rowsRead`, the outcome's count, the last
   * refusal's code and paths, `lastRunAt` as the last delivery): kept here and written about
   * once a second, so a delivery costs no query, and kept while the database is down.
   */
  record(id: string, outcome: DeliveryOutcome, rejection?: Record<string, unknown>): void {
    let entry = this.#counts.get(id);
    if (!entry) {
      entry = { counts: noCounts() };
      this.#counts.set(id, entry);
    }
    entry.counts.read++;
    entry.counts[outcome === 'duplicate' ? 'duplicate' : outcome]++;
    if (rejection) entry.lastRejection = rejection;
    this.#timer ??= setTimeout(() => void this.flush(), FLUSH_MS).unref();
  }

  /** Writes the counts kept so far; what cannot be written now is kept for the next time. */
  async flush(): Promise<void> {
    this.#timer = undefined;
    const pending = [...this.#counts];
    this.#counts.clear();
    for (const [id, { counts, lastRejection }] of pending) {
      try {
        await addWebhookDeliveries(this.#pool, id, counts, lastRejection);
      } catch (err) {
        const kept = this.#counts.get(id) ?? { counts: noCounts() };
        for (const k of Object.keys(counts) as (keyof BatchCounts)[]) kept.counts[k] += counts[k];
        kept.lastRejection ??= lastRejection;
        this.#counts.set(id, kept);
        this.#logger.debug({ err }, 'webhook delivery counts not written yet');
      }
    }
    if (this.#counts.size > 0) this.#timer ??= setTimeout(() => void this.flush(), FLUSH_MS * 5).unref();
  }

  /** Writes what is counted (at shutdown). */
  async close(): Promise<void> {
    clearTimeout(this.#timer);
    await this.flush();
    clearTimeout(this.#timer);
  }

  /** The webhook source with this id; null when there is none. @throws ApiError 503 when it cannot be looked up. */
  async get(id: string): Promise<WebhookTarget | null> {
    if (!UUID.test(id)) return null;
    const cached = this.#cache.get(id);
    if (cached && Date.now() - cached.at < TTL_MS) return cached.target;
    let loading = this.#loading.get(id);
    if (!loading) {
      loading = this.#load(id).finally(() => this.#loading.delete(id));
      this.#loading.set(id, loading);
    }
    try {
      const target = await loading;
      this.#cache.delete(id);
      if (this.#cache.size >= MAX_ENTRIES) this.#cache.delete(this.#cache.keys().next().value as string);
      this.#cache.set(id, { target, at: Date.now() });
      return target;
    } catch (err) {
      if (cached) return cached.target;
      this.#logger.warn({ err }, 'webhook source lookup failed');
      throw errors.databaseUnavailable();
    }
  }

  async #load(id: string): Promise<WebhookTarget | null> {
    const row = await getSource(this.#pool, id);
    if (row?.kind !== 'webhook') return null;
    const config = SourceConfig.parse({
      ...row.settings,
      ...this.#secrets.open(row.id, row.secrets),
      kind: row.kind,
      name: row.name,
      service: row.service,
    }) as WebhookSourceConfig;
    return {
      id: row.id,
      name: row.name,
      service: row.service,
      paused: row.paused,
      config,
      mapping: mappingOf(row.id, config),
    };
  }
}
