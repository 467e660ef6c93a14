/**
 * A fixed pause. Only for a duration that *is* the scenario (an outage that lasts 16 s, a
 * load that runs on for 2 s, pacing a client); to wait for something to happen, use
 * {@link waitFor}, which returns as soon as it has.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `fn` until it returns a truthy value, and returns that value.
 * @param timeoutMs how long to try before failing with `what` and the last value seen
 * @param intervalMs the pause between two tries
 * @throws when the time runs out (or when `fn` throws)
 */
export async function waitFor<T>(
  fn: () => Promise<T>,
  timeoutMs = 30_000,
  what = 'condition',
  intervalMs = 100,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last as NonNullable<T>;
    await sleep(intervalMs);
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}
