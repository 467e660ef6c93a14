// Durations as the console says them, and how often it looks at something still in flight.
// Pure (no DOM), so the unit tests import it.

/**
 * How long to wait before the next look at an erasure or retention pass still running:
 * every second at first (most finish within seconds), then less often. Each look is an
 * admin or compliance call, and every one of those writes an audit row, so a pass that
 * takes an hour must not leave thousands of them behind.
 */
export function watchDelay(elapsedMs: number): number {
  if (elapsedMs < 15_000) return 1_000;
  if (elapsedMs < 120_000) return 3_000;
  return 10_000;
}

/** A length of time in its largest sensible unit: "under 1 s", "45 s", "12 min", "3 h 20 min", "7 days". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return 'under 1 s';
  const s = Math.round(ms / 1000);
  if (s < 90) return `${s} s`;
  const min = Math.round(s / 60);
  if (min < 90) return `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 48) return min % 60 ? `${h} h ${min % 60} min` : `${h} h`;
  const days = Math.round(h / 24);
  return `${days} days`;
}
