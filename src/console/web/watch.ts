import { useRef } from 'preact/hooks';
import { watchDelay } from './time.ts';
import { usePolling } from './ui.tsx';

/** The poll's period: the finest step of {@link watchDelay}. */
const STEP_MS = 1_000;
/** A look due within this much of the next poll is taken at this one (timers drift). */
const SLACK_MS = 200;

/**
 * Calls `tick` while `active`: at once, then every second, then less often ({@link watchDelay}),
 * never while the tab is hidden (`usePolling`). For what is still in flight (an erasure, a
 * retention pass): unlike a plain poll it stops looking when nothing is, because each look is
 * an audited call.
 */
export function useWatch(active: boolean, tick: () => Promise<void>): void {
  const since = useRef<number | undefined>(undefined);
  const nextAt = useRef(0);
  usePolling(async () => {
    if (!active) {
      since.current = undefined;
      nextAt.current = 0;
      return;
    }
    since.current ??= Date.now();
    if (Date.now() + SLACK_MS < nextAt.current) return;
    await tick();
    nextAt.current = Date.now() + watchDelay(Date.now() - since.current);
  }, STEP_MS);
}
