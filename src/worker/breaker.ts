import {
  BrokenCircuitError,
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  handleWhenResult,
  SamplingBreaker,
  wrap,
} from 'cockatiel';
import type { Logger } from 'pino';
import { BREAKER_GAUGE_VALUE, BREAKER_SEVERITY, type BreakerState } from '../buffer/worker-status.ts';
import type { Config } from '../config.ts';
import { classifyDbError } from '../store/errors.ts';
import type { Metrics } from '../telemetry/metrics.ts';

export type { BreakerState };

/**
 * What opened the breaker (the seed's L1–L3): consecutive connection failures, consecutive
 * inserts slower than BREAKER_SLOW_INSERT_MS, or an error rate over BREAKER_ERROR_RATE.
 */
export const BREAKER_TRIGGERS = ['connection', 'slow_insert', 'error_rate'] as const;
export type BreakerTrigger = (typeof BREAKER_TRIGGERS)[number];

/** Fewest calls within BREAKER_ERROR_WINDOW_MS for the error rate to open the breaker. */
export const ERROR_RATE_MIN_CALLS = 10;

const STATE_NAMES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half-open',
  [CircuitState.Isolated]: 'open',
};

export interface DatabaseBreakerOptions {
  config: Pick<
    Config,
    | 'BREAKER_FAILURE_THRESHOLD'
    | 'BREAKER_HALF_OPEN_AFTER_MS'
    | 'BREAKER_MAX_HALF_OPEN_AFTER_MS'
    | 'BREAKER_SLOW_INSERT_MS'
    | 'BREAKER_SLOW_INSERTS'
    | 'BREAKER_ERROR_RATE'
    | 'BREAKER_ERROR_WINDOW_MS'
  >;
  logger: Logger;
  metrics: Metrics;
  /** Called after every state change. */
  onChange?: (state: BreakerState) => void;
}

/** True for the error a call gets, without running, while the breaker is open. */
export function isBreakerOpen(err: unknown): boolean {
  return err instanceof BrokenCircuitError;
}

/**
 * The result a call has while it runs past BREAKER_SLOW_INSERT_MS: the slow-insert policy
 * counts it as a failure at that moment (not when the call ends, which behind a held lock may
 * be much later), and the caller still awaits the call itself through `work`.
 */
class SlowCall {
  readonly work: Promise<unknown>;
  constructor(work: Promise<unknown>) {
    this.work = work;
  }
}

const SLOW = Symbol('slow');

/**
 * The circuit breaker around PostgreSQL: three cockatiel circuit breakers wrapped into one
 * policy, each with a trigger of its own (the seed's L1–L3), so the first to open stops every
 * call and says why:
 * - `connection`: BREAKER_FAILURE_THRESHOLD consecutive availability failures (connection
 *   refused or reset, timeouts, SQLSTATE class 08, 57P01–57P03, 53300);
 * - `slow_insert`: BREAKER_SLOW_INSERTS (default 1) consecutive calls still running after
 *   BREAKER_SLOW_INSERT_MS, counted when they pass it (a call behind a held lock counts while
 *   it waits; it is not cancelled, and its caller gets its result when it ends);
 * - `error_rate`: more than BREAKER_ERROR_RATE of the calls of the last
 *   BREAKER_ERROR_WINDOW_MS failed with an error of the database that is neither a connection
 *   failure (those are the first trigger's) nor rows refused as data (deadlocks, cancelled
 *   statements, internal errors, a full disk…), with at least {@link ERROR_RATE_MIN_CALLS}
 *   calls in that window.
 * Rows refused as data never count: they are the rows' fault and go to the dead letters.
 * While open, calls fail at once; after a pause that doubles with every failed probe
 * (BREAKER_HALF_OPEN_AFTER_MS up to BREAKER_MAX_HALF_OPEN_AFTER_MS) one call is let through
 * as the probe, and its success closes the breaker.
 */
export class DatabaseBreaker {
  readonly #policies: Record<BreakerTrigger, CircuitBreakerPolicy>;
  readonly #policy;
  readonly #slowMs: number;
  #state: BreakerState = 'closed';
  #since = Date.now();
  #trigger: BreakerTrigger | undefined;
  #reason: string | undefined;

  constructor(opts: DatabaseBreakerOptions) {
    const { config, logger, metrics } = opts;
    this.#slowMs = config.BREAKER_SLOW_INSERT_MS;
    const halfOpenAfter = () =>
      new ExponentialBackoff({
        initialDelay: config.BREAKER_HALF_OPEN_AFTER_MS,
        maxDelay: config.BREAKER_MAX_HALF_OPEN_AFTER_MS,
      });
    this.#policies = {
      connection: circuitBreaker(
        handleWhen((err) => classifyDbError(err) === 'unavailable'),
        { breaker: new ConsecutiveBreaker(config.BREAKER_FAILURE_THRESHOLD), halfOpenAfter: halfOpenAfter() },
      ),
      error_rate: circuitBreaker(
        handleWhen((err) => !isBreakerOpen(err) && classifyDbError(err) === 'transient'),
        {
          breaker: new SamplingBreaker({
            threshold: config.BREAKER_ERROR_RATE,
            duration: config.BREAKER_ERROR_WINDOW_MS,
            minimumRps: (ERROR_RATE_MIN_CALLS * 1000) / config.BREAKER_ERROR_WINDOW_MS,
          }),
          halfOpenAfter: halfOpenAfter(),
        },
      ),
      slow_insert: circuitBreaker(
        handleWhenResult((result) => result instanceof SlowCall),
        { breaker: new ConsecutiveBreaker(config.BREAKER_SLOW_INSERTS), halfOpenAfter: halfOpenAfter() },
      ),
    };
    // Outermost first: a connection failure is seen by the connection policy before the
    // error-rate one; a slow call is known only innermost, where the timer runs.
    this.#policy = wrap(this.#policies.connection, this.#policies.error_rate, this.#policies.slow_insert);

    metrics.breakerState.set({ dependency: 'postgres' }, BREAKER_GAUGE_VALUE.closed);
    for (const trigger of BREAKER_TRIGGERS) {
      const policy = this.#policies[trigger];
      policy.onBreak((failure) => {
        this.#trigger = trigger;
        this.#reason =
          'error' in failure
            ? String(failure.error)
            : `an insert ran past BREAKER_SLOW_INSERT_MS (${this.#slowMs} ms)`;
        metrics.breakerOpens.inc({ dependency: 'postgres', trigger });
      });
      policy.onStateChange(() => {
        const state = this.#combined();
        if (state === this.#state) return;
        this.#state = state;
        this.#since = Date.now();
        metrics.breakerState.set({ dependency: 'postgres' }, BREAKER_GAUGE_VALUE[state]);
        metrics.breakerTransitions.inc({ dependency: 'postgres', to: state });
        if (state === 'open')
          logger.error(
            { breaker: state, trigger: this.#trigger, reason: this.#reason },
            'database circuit breaker opened',
          );
        else logger.warn({ breaker: state, trigger: this.#trigger }, `database circuit breaker ${state}`);
        opts.onChange?.(state);
      });
    }
  }

  /** The worst state of the three policies: open if any is open, half-open if any probes. */
  #combined(): BreakerState {
    let worst: BreakerState = 'closed';
    for (const trigger of BREAKER_TRIGGERS) {
      const state = STATE_NAMES[this.#policies[trigger].state];
      if (BREAKER_SEVERITY[state] > BREAKER_SEVERITY[worst]) worst = state;
    }
    return worst;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** When the current state began (ms since epoch). */
  get since(): number {
    return this.#since;
  }

  /** What opened the breaker last (kept after it closes, for the record); undefined if it never opened. */
  get trigger(): BreakerTrigger | undefined {
    return this.#trigger;
  }

  /** The error (or slowness) that opened it last. */
  get reason(): string | undefined {
    return this.#reason;
  }

  /** Runs `fn` through the breaker; rejects with a BrokenCircuitError while it is open. */
  async execute<T>(fn: () => Promise<T>): Promise<T> {
    const result = await this.#policy.execute(() => this.#timed(fn));
    return (result instanceof SlowCall ? await result.work : result) as T;
  }

  /** `fn`'s result, or a {@link SlowCall} holding it once it runs past BREAKER_SLOW_INSERT_MS. */
  async #timed<T>(fn: () => Promise<T>): Promise<T | SlowCall> {
    const work = fn();
    let timer: NodeJS.Timeout | undefined;
    const slow = new Promise<typeof SLOW>((resolve) => {
      timer = setTimeout(resolve, this.#slowMs, SLOW);
    });
    try {
      const first = await Promise.race([work, slow]);
      if (first !== SLOW) return first as T;
      // Its failure reaches the caller through `work`; nothing else awaits it until then.
      work.catch(() => {});
      return new SlowCall(work);
    } finally {
      clearTimeout(timer);
    }
  }
}
