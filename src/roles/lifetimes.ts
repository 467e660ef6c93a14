/** What {@link Lifetimes} logs through: a pino logger, or a fake in tests. */
export interface LifetimeLog {
  debug(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

type Closer = () => void | Promise<void>;

/** Raised by {@link Lifetimes.once} after {@link Lifetimes.close} has begun. */
export class LifetimesClosedError extends Error {
  override readonly name = 'LifetimesClosedError';
}

/**
 * The lifetimes of one process's services: each is built on first use and only once, and
 * its closer is recorded when its build has finished, so a service built from others
 * (which finish first) is closed before them. `close()` runs every closer once, in reverse
 * order of construction, and carries on past one that fails.
 */
export class Lifetimes {
  readonly #log: LifetimeLog;
  readonly #built = new Map<string, Promise<unknown>>();
  readonly #closers: { name: string; close: Closer }[] = [];
  #closing: Promise<void> | undefined;

  constructor(log: LifetimeLog) {
    this.#log = log;
  }

  /**
   * The service named `name`: built by `build` on the first call, the same promise after.
   * `close`, when given, is recorded once the build has succeeded.
   */
  once<T>(
    name: string,
    build: () => T | Promise<T>,
    close?: (service: T) => void | Promise<void>,
  ): Promise<T> {
    const known = this.#built.get(name);
    if (known) return known as Promise<T>;
    if (this.#closing) return Promise.reject(new LifetimesClosedError(`cannot build ${name}: shutting down`));
    const building = (async () => {
      const service = await build();
      if (close) this.defer(name, () => close(service));
      return service;
    })();
    this.#built.set(name, building);
    return building;
  }

  /** Records a closer for something started outside {@link once} (a schedule, a listener). */
  defer(name: string, close: Closer): void {
    if (this.#closing) throw new LifetimesClosedError(`cannot start ${name}: shutting down`);
    this.#closers.push({ name, close });
  }

  /** Runs every recorded closer once, newest first; a failure is logged and the rest still run. */
  close(): Promise<void> {
    this.#closing ??= this.#closeAll();
    return this.#closing;
  }

  async #closeAll(): Promise<void> {
    for (const { name, close } of this.#closers.reverse()) {
      try {
        await close();
        this.#log.debug({ service: name }, 'closed');
      } catch (err) {
        this.#log.error({ service: name, err }, 'stop failed');
      }
    }
  }
}
