import type pg from 'pg';
import type { Logger } from 'pino';
import type { RedisLike } from '../buffer/redis-client.ts';
import {
  type CompiledPlan,
  compilePlanSchema,
  DEFAULT_PLAN_SETTINGS,
  PlanBook,
  type PlanMode,
  type PlanSettings,
  UNREGISTERED_TYPE,
  type UnknownTypeRule,
} from '../events/plans.ts';
import { currentSchemas, listPlanSettings, schemaBodies } from '../store/plans.repo.ts';
import type { Metrics } from '../telemetry/metrics.ts';

export interface PlanRegistryOptions {
  pool: pg.Pool;
  /** For PUBLISH. */
  redis: RedisLike;
  /** A connection of its own, put in subscriber mode. */
  subscriber: RedisLike;
  /** `keys.planChanges`. */
  channel: string;
  logger: Logger;
  /** Full reload interval (PLANS_RELOAD_S), in case a message was missed while Redis was away. */
  reloadEveryMs: number;
  /** Its violation series are made at 0 for every registered type on each load. */
  metrics?: Pick<Metrics, 'schemaViolations'> | undefined;
}

/** Where the ingest pipeline reads the plans from: the registry, or a fixed book in unit tests. */
export interface PlanSource {
  readonly book: PlanBook;
}

const versionKey = (service: string, type: string, version: number) =>
  `${service}\u0000${type}\u0000${version}`;

/**
 * Every service's tracking plan as this process checks events against it (ARCHITECTURE
 * §14). Loaded from PostgreSQL at start, again on every change any process announces over
 * Redis pub/sub (within milliseconds), and every PLANS_RELOAD_S in case a message was missed.
 * A load reads the current versions, fetches and compiles only those it has not compiled
 * yet, and swaps in a new {@link PlanBook}: no event is ever checked against half a change,
 * and no schema is compiled on a request's path.
 */
export class PlanRegistry implements PlanSource {
  readonly #o: PlanRegistryOptions;
  #book = new PlanBook();
  /** Compiled validators by (service, type, version); a version's schema never changes. */
  #compiled = new Map<string, CompiledPlan | null>();
  #loading: Promise<void> | undefined;
  #again = false;
  #timer: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  /** Whether a load has succeeded: until then (PostgreSQL down at start) it retries every second. */
  #loaded = false;
  #closed = false;

  constructor(opts: PlanRegistryOptions) {
    this.#o = opts;
  }

  get book(): PlanBook {
    return this.#book;
  }

  /** Subscribes, then loads (a failed first load is logged and retried by the timer). */
  async start(): Promise<void> {
    const { subscriber, channel, logger } = this.#o;
    subscriber.on('message', (from: string) => {
      if (from === channel) void this.reload();
    });
    // On every (re)connect: what changed while disconnected was missed, so load again.
    const subscribe = () => {
      subscriber
        .subscribe(channel)
        .then(() => this.reload())
        .catch((err: Error) => {
          if (!this.#closed)
            logger.warn({ err: err.message }, 'cannot subscribe to plan changes; reloading on a timer');
        });
    };
    subscriber.on('ready', subscribe);
    if (subscriber.status === 'ready') await subscriber.subscribe(channel).catch(() => {});
    await this.reload();
    this.#timer = setInterval(() => void this.reload(), this.#o.reloadEveryMs);
    this.#timer.unref();
    this.#retryUntilLoaded();
  }

  /** Whether the plans were loaded at least once; before that, events go unchecked. */
  get loaded(): boolean {
    return this.#loaded;
  }

  stop(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#retry);
  }

  /**
   * A process that started while PostgreSQL was down checks nothing until it has the plans:
   * it asks every second until it does, not every PLANS_RELOAD_S.
   */
  #retryUntilLoaded(): void {
    if (this.#loaded || this.#closed) return;
    this.#retry = setTimeout(() => void this.reload().finally(() => this.#retryUntilLoaded()), 1_000);
    this.#retry.unref();
  }

  /** Tells every process (this one first) that `service`'s plan changed. */
  async changed(service: string): Promise<void> {
    await this.reload();
    try {
      await this.#o.redis.publish(this.#o.channel, service);
    } catch (err) {
      this.#o.logger.warn(
        { err: (err as Error).message, service },
        'cannot announce a plan change; other API processes apply it within PLANS_RELOAD_S',
      );
    }
  }

  /** Loads the plans; calls during a load run one more load after it, never two at once. */
  reload(): Promise<void> {
    if (this.#loading) {
      this.#again = true;
      return this.#loading;
    }
    this.#loading = (async () => {
      do {
        this.#again = false;
        try {
          await this.#load();
        } catch (err) {
          this.#o.logger.warn(
            { err: (err as Error).message },
            'tracking plans not reloaded; keeping the last ones',
          );
        }
      } while (this.#again && !this.#closed);
    })().finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  async #load(): Promise<void> {
    const { pool, logger } = this.#o;
    const [versions, settings] = await Promise.all([currentSchemas(pool), listPlanSettings(pool)]);
    const missing = versions.filter((v) => !this.#compiled.has(versionKey(v.service, v.type, v.version)));
    for (const body of await schemaBodies(pool, missing)) {
      const compiled = compilePlanSchema(body.schema);
      if (!compiled.ok) {
        // Refused at PUT, so only a schema stored by another validator version gets here.
        logger.error(
          { service: body.service, type: body.type, version: body.version, reason: compiled.message },
          'a stored tracking-plan schema does not compile; its type is not checked',
        );
      }
      this.#compiled.set(
        versionKey(body.service, body.type, body.version),
        compiled.ok ? { version: body.version, validate: compiled.validate } : null,
      );
    }
    const services = new Map<string, { settings: PlanSettings; types: Map<string, CompiledPlan | null> }>();
    const planOf = (service: string) => {
      let plan = services.get(service);
      if (!plan) {
        plan = { settings: DEFAULT_PLAN_SETTINGS, types: new Map() };
        services.set(service, plan);
      }
      return plan;
    };
    for (const s of settings) {
      planOf(s.service).settings = {
        mode: s.mode as PlanMode,
        unknownTypes: s.unknownTypes as UnknownTypeRule,
      };
    }
    const current = new Set<string>();
    for (const v of versions) {
      const key = versionKey(v.service, v.type, v.version);
      current.add(key);
      const compiled = this.#compiled.get(key);
      if (compiled !== undefined) planOf(v.service).types.set(v.type, compiled);
    }
    for (const key of this.#compiled.keys()) if (!current.has(key)) this.#compiled.delete(key);
    this.#book = new PlanBook(services);
    if (!this.#loaded) logger.info({ services: services.size, types: current.size }, 'tracking plans loaded');
    this.#loaded = true;
    this.#zeroSeries(services);
  }

  /** A series at 0 for each type a violation can be counted under, so rate() sees the first one. */
  #zeroSeries(services: ReadonlyMap<string, { types: ReadonlyMap<string, unknown> }>): void {
    const counter = this.#o.metrics?.schemaViolations;
    if (!counter) return;
    for (const [service, plan] of services) {
      for (const type of [...plan.types.keys(), UNREGISTERED_TYPE]) {
        for (const action of ['warned', 'rejected']) counter.inc({ service, type, action }, 0);
      }
    }
  }
}
