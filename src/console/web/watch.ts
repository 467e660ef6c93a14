import { useEffect, useRef } from 'preact/hooks';
import { watchDelay } from './time.ts';

/**
 * Calls `tick` while `active`: every second at first, then less often ({@link watchDelay});
 * not while the tab is hidden (at once when it shows again); never two at a time. For what is
 * still in flight (an erasure, a retention pass): unlike `usePolling`, it stops when nothing
 * is, because each look is an audited call.
 */
export function useWatch(active: boolean, tick: () => Promise<void>): void {
  const latest = useRef(tick);
  latest.current = tick;
  useEffect(() => {
    if (!active) return;
    const since = Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    let running = false;
    const run = async () => {
      if (running || stopped) return;
      clearTimeout(timer);
      if (document.visibilityState !== 'visible') return; // resumed by onVisible
      running = true;
      try {
        await latest.current();
      } finally {
        running = false;
        if (!stopped) timer = setTimeout(run, watchDelay(Date.now() - since));
      }
    };
    const onVisible = () => {
      if (document.visibilityState === 'visible') void run();
    };
    timer = setTimeout(run, watchDelay(0));
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, [active]);
}
