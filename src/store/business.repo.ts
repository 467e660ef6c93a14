import type pg from 'pg';

export interface BusinessSummary {
  /** Start of the window (now − 24 h) and when this summary was computed. */
  from: string;
  computedAt: string;
  total: number;
  /** Events per service over the window, most first. */
  byService: { service: string; events: number }[];
  /** Events per hour over the window, oldest first; hours without events are left out. */
  hourly: { hour: string; events: number }[];
  /** The ten services with most events, with their share of the total. */
  topServices: { service: string; events: number; share: number }[];
}

/**
 * Events by service and by hour over the last 24 hours. The range on `occurred_at` (the
 * partition key and the leading primary-key column) keeps the scan to the last day's rows
 * in at most two partitions, never the whole table.
 */
export async function businessSummary(pool: pg.Pool, now = new Date()): Promise<BusinessSummary> {
  const from = new Date(now.getTime() - 24 * 3_600_000);
  const { rows } = await pool.query<{ service: string; hour: Date; events: string }>(
    `SELECT service, date_trunc('hour', occurred_at) AS hour, count(*)::text AS events
       FROM events
      WHERE occurred_at >= $1 AND occurred_at <= $2
      GROUP BY 1, 2`,
    [from, now],
  );
  const services = new Map<string, number>();
  const hours = new Map<string, number>();
  let total = 0;
  for (const r of rows) {
    const n = Number(r.events);
    total += n;
    services.set(r.service, (services.get(r.service) ?? 0) + n);
    const hour = new Date(r.hour).toISOString();
    hours.set(hour, (hours.get(hour) ?? 0) + n);
  }
  const byService = [...services]
    .map(([service, events]) => ({ service, events }))
    .sort((a, b) => b.events - a.events || a.service.localeCompare(b.service));
  return {
    from: from.toISOString(),
    computedAt: now.toISOString(),
    total,
    byService,
    hourly: [...hours]
      .map(([hour, events]) => ({ hour, events }))
      .sort((a, b) => a.hour.localeCompare(b.hour)),
    topServices: byService
      .slice(0, 10)
      .map((s) => ({ ...s, share: total > 0 ? Math.round((s.events / total) * 1e4) / 1e4 : 0 })),
  };
}
