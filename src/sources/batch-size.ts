/**
 * Sizes a table source's batches by measurement: each batch (read, mapped, checked,
 * buffered) should take about `targetMs`, so a batch is large where rows are cheap and small
 * where they are wide or the source is slow, and the cursor is committed often either way.
 * The next size follows the last batch's rate, at most doubling or halving at a time.
 */
export class BatchSizer {
  readonly #min: number;
  readonly #max: number;
  readonly #targetMs: number;
  #size: number;

  constructor(opts: { max: number; min?: number; targetMs?: number; start?: number }) {
    this.#max = Math.max(1, opts.max);
    this.#min = Math.min(opts.min ?? 10, this.#max);
    this.#targetMs = opts.targetMs ?? 500;
    this.#size = Math.min(this.#max, Math.max(this.#min, opts.start ?? 500));
  }

  /** Rows to ask for next. */
  get size(): number {
    return this.#size;
  }

  /** Records how long a batch of `rows` took; a short batch (the table's end) says nothing of the rate. */
  measured(rows: number, elapsedMs: number): void {
    if (rows < this.#size || rows === 0) return;
    const perRowMs = Math.max(elapsedMs, 0.1) / rows;
    const ideal = this.#targetMs / perRowMs;
    const next = Math.min(this.#size * 2, Math.max(this.#size / 2, ideal));
    this.#size = Math.round(Math.min(this.#max, Math.max(this.#min, next)));
  }
}
