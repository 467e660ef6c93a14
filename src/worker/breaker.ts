import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
} from 'cockatiel';
import type { Logger } from 'pino';
import { BREAKER_GAUGE_VALUE, type BreakerState } from '../buffer/worker-status.ts';
import type { Config } from '../config.ts';
import { classifyDbError } from '../store/errors.ts';
import type { Metrics } from '../telemetry/metrics.ts';

export type { BreakerState };

const STATE_NAMES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half-open',
  [CircuitState.Isolated]: 'open',
};

export interface DatabaseBreakerOptions {
  config: Pick<
    Config,
    'BREAKER_FAILURE_THRESHOLD' | 'BREAKER_HALF_OPEN_AFTER_MS' | 'BREAKER_MAX_HALF_OPEN_AFTER_MS'
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
 * The circuit breaker around PostgreSQL (cockatiel). It opens after
 * BREAKER_FAILURE_THRESHOLD consecutive availability failures — connection refused or
 * reset, timeouts, SQLSTATE class 08, 57P01–57P03, 53300 — and never for a data error,
 * which is the rows' fault and goes to the dead letters. While open, calls fail at once;
 * after a pause that doubles with every failed probe (BREAKER_HALF_OPEN_AFTER_MS up to
 * BREAKER_MAX_HALF_OPEN_AFTER_MS) one call is let through as the probe, and its success
 * closes the breaker.
 */
export class DatabaseBreaker {
  readonly #policy;
  #since = Date.now();

  constructor(opts: DatabaseBreakerOptions) {
    const { config, logger, metrics } = opts;
    this.#policy = circuitBreaker(
      handleWhen((err) => classifyDbError(err) === 'unavailable'),
      {
        breaker: new ConsecutiveBreaker(config.BREAKER_FAILURE_THRESHOLD),
        halfOpenAfter: new ExponentialBackoff({
          initialDelay: config.BREAKER_HALF_OPEN_AFTER_MS,
          maxDelay: config.BREAKER_MAX_HALF_OPEN_AFTER_MS,
        }),
      },
    );
    metrics.breakerState.set({ dependency: 'postgres' }, BREAKER_GAUGE_VALUE.closed);
    this.#policy.onStateChange((raw) => {
      const state = STATE_NAMES[raw];
      this.#since = Date.now();
      metrics.breakerState.set({ dependency: 'postgres' }, BREAKER_GAUGE_VALUE[state]);
      metrics.breakerTransitions.inc({ dependency: 'postgres', to: state });
      const failure = this.#policy.lastFailure;
      const reason = failure && 'error' in failure ? String(failure.error) : undefined;
      if (state === 'open') logger.error({ breaker: state, reason }, 'database circuit breaker opened');
      else logger.warn({ breaker: state }, `database circuit breaker ${state}`);
      opts.onChange?.(state);
    });
  }

  get state(): BreakerState {
    return STATE_NAMES[this.#policy.state];
  }

  /** When the current state began (ms since epoch). */
  get since(): number {
    return this.#since;
  }

  /** Runs `fn` through the breaker; rejects with a BrokenCircuitError while it is open. */
  execute<T>(fn: () => Promise<T>): Promise<T> {
    return this.#policy.execute(fn);
  }
}
