import type { StreamEntry } from '../buffer/consumer.ts';

/**
 * The batches a worker is storing at the same time, and the entries they hold. An entry
 * held here is never taken into a second batch (XAUTOCLAIM may hand this consumer its own
 * pending entries back), so no row is inserted, counted or acknowledged twice at once.
 */
export class InFlightBatches {
  /** Each batch being stored, with its entries. */
  readonly #running = new Map<Promise<void>, readonly StreamEntry[]>();
  #failure: unknown;

  get size(): number {
    return this.#running.size;
  }

  /** Runs `store(entries)` alongside the others; a failure is kept for {@link takeFailure}. */
  start(entries: readonly StreamEntry[], store: () => Promise<void>): void {
    const run: Promise<void> = store()
      .catch((err: unknown) => {
        this.#failure ??= err;
      })
      .finally(() => {
        this.#running.delete(run);
      });
    this.#running.set(run, entries);
  }

  /** Entries not already held by a batch in flight. */
  withoutHeld(entries: StreamEntry[]): StreamEntry[] {
    // Only reclaimed entries are checked, and rarely: index the held ones only then.
    if (entries.length === 0 || this.#running.size === 0) return entries;
    const held = new Set<string>();
    for (const batch of this.#running.values()) for (const e of batch) held.add(heldKey(e));
    return entries.filter((e) => !held.has(heldKey(e)));
  }

  /** The first error of a finished batch since the last call, if any. */
  takeFailure(): unknown {
    const failure = this.#failure;
    this.#failure = undefined;
    return failure;
  }

  /** Resolves when one batch finishes, or after `timeoutMs`; at once when none is in flight. */
  async one(timeoutMs = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.#running.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const waits: Promise<void>[] = [...this.#running.keys()];
    if (Number.isFinite(timeoutMs)) {
      waits.push(new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, timeoutMs)))));
    }
    await Promise.race(waits);
    clearTimeout(timer);
  }

  /** Resolves when every batch in flight has finished. */
  async all(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running.keys()]);
  }
}

const heldKey = (e: Pick<StreamEntry, 'partition' | 'id'>) => `${e.partition}:${e.id}`;
