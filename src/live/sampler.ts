/** What a listener is told when its sampling rate changes (the `sampling` frame). */
export interface SamplingChange {
  rate: number;
  matchingPerSecond: number;
  maxPerSecond: number;
}

/** A rate with two significant digits, never 0. */
const rounded = (r: number) => Math.max(Number(r.toPrecision(2)), 1e-6);

/**
 * Keeps at most `maxPerSecond` of the records offered each second, spread evenly. It keeps
 * all while the previous second had no more than that; above it, a stated `rate`
 * (max ÷ matching per second of the last second) applied by accumulation, so one in 1/rate is
 * kept at even intervals rather than the first `max` of each second. A hard cap of `max` per
 * window stands behind the rate; the first time it bites in a window while nothing was being
 * sampled (a burst), the rate is estimated from the pace so far and announced at once.
 *
 * A change is announced (`takeChange`) when sampling starts or stops, or the rate moves by
 * more than a tenth; the rate applied is always the one last announced.
 */
export class Sampler {
  readonly maxPerSecond: number;
  /** The rate in force, as last announced; 1 while not sampling. */
  rate = 1;
  #windowStart: number;
  #matched = 0;
  #kept = 0;
  #credit = 0;
  #change: SamplingChange | undefined;

  constructor(maxPerSecond: number, now: number) {
    this.maxPerSecond = maxPerSecond;
    this.#windowStart = now;
  }

  /**
   * Whether to send the record offered at `now`. Records that cannot be sent (they went
   * without their body; `count` of them) count as matching and pass their turns to the next
   * one that can.
   */
  offer(now: number, sendable = true, count = 1): boolean {
    if (!sendable) {
      this.#matched += count;
      if (this.rate < 1) this.#credit = Math.min(this.#credit + this.rate * count, 1);
      return false;
    }
    this.#matched++;
    if (this.#kept >= this.maxPerSecond) {
      if (this.rate === 1) {
        const seconds = Math.max(now - this.#windowStart, 100) / 1000;
        this.#announce(rounded(this.maxPerSecond / (this.#matched / seconds)), this.#matched / seconds);
      }
      return false;
    }
    if (this.rate < 1) {
      this.#credit += this.rate;
      if (this.#credit < 1 - 1e-9) return false; // tenths add up to 0.999…
      this.#credit -= 1;
    }
    this.#kept++;
    return true;
  }

  /** Ends the current window (about a second long) at `now` and starts the next. */
  endWindow(now: number): void {
    const seconds = Math.max(now - this.#windowStart, 1) / 1000;
    const perSecond = this.#matched / seconds;
    const next = perSecond > this.maxPerSecond ? rounded(this.maxPerSecond / perSecond) : 1;
    const significant = (next === 1) !== (this.rate === 1) || Math.abs(next - this.rate) > this.rate * 0.1;
    if (significant) this.#announce(next, perSecond);
    this.#windowStart = now;
    this.#matched = 0;
    this.#kept = 0;
  }

  /** The change to announce since the last call, if any. */
  takeChange(): SamplingChange | undefined {
    const change = this.#change;
    this.#change = undefined;
    return change;
  }

  #announce(rate: number, perSecond: number): void {
    this.rate = rate;
    if (rate === 1) this.#credit = 0;
    this.#change = { rate, matchingPerSecond: Math.round(perSecond), maxPerSecond: this.maxPerSecond };
  }
}
