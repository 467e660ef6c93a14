const DAY_MS = 86_400_000;

/** How long each service's events stay in PostgreSQL. */
export interface RetentionPolicy {
  defaultDays: number;
  byService: Readonly<Record<string, number>>;
}

export function retentionDays(policy: RetentionPolicy, service: string): number {
  return policy.byService[service] ?? policy.defaultDays;
}

/** Rows of `service` that occurred before this instant are past retention. */
export function retentionCutoff(policy: RetentionPolicy, service: string, now: Date): Date {
  return new Date(now.getTime() - retentionDays(policy, service) * DAY_MS);
}

/** Longest retention of any service: a partition ending before now − this is past it for everyone. */
export function longestRetentionDays(policy: RetentionPolicy): number {
  return Math.max(policy.defaultDays, ...Object.values(policy.byService));
}

/** Shortest retention of any service: nothing newer than now − this is ever archived. */
export function shortestRetentionDays(policy: RetentionPolicy): number {
  return Math.min(policy.defaultDays, ...Object.values(policy.byService));
}

/** A UTC calendar month: `label` YYYY-MM, its partition name and bounds. */
export interface Month {
  label: string;
  partition: string;
  from: Date;
  to: Date;
}

export function monthOf(at: Date): Month {
  const y = at.getUTCFullYear();
  const m = at.getUTCMonth();
  const mm = String(m + 1).padStart(2, '0');
  return {
    label: `${y}-${mm}`,
    partition: `events_${y}_${mm}`,
    from: new Date(Date.UTC(y, m, 1)),
    to: new Date(Date.UTC(y, m + 1, 1)),
  };
}

/** `YYYY-MM` → month; throws on anything else. */
export function parseMonth(label: string): Month {
  const match = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(label);
  if (!match) throw new Error(`"${label}" is not a month (YYYY-MM)`);
  return monthOf(new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, 1)));
}

/** Months from `from` to `to`, both included. */
export function monthRange(from: Month, to: Month): Month[] {
  const out: Month[] = [];
  for (let m = from; m.from.getTime() <= to.from.getTime(); m = monthOf(m.to)) out.push(m);
  return out;
}

/** `events_YYYY_MM` → its month; undefined for any other name. */
export function monthOfPartition(name: string): Month | undefined {
  const match = /^events_(\d{4})_(0[1-9]|1[0-2])$/.exec(name);
  return match ? parseMonth(`${match[1]}-${match[2]}`) : undefined;
}

/** Hive-style prefix of one month's archive objects, optionally of one service. */
export function archivePrefix(month: Month, service?: string): string {
  const [y, m] = month.label.split('-');
  return `events/year=${y}/month=${m}/${service === undefined ? '' : `service=${service}/`}`;
}

/** Object keys of one archive: the Parquet file and its manifest beside it. */
export function archiveKeys(
  month: Month,
  service: string,
  createdAt: Date,
  archiveId: string,
): { objectKey: string; manifestKey: string } {
  const stamp = createdAt
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const base = `${archivePrefix(month, service)}part-${stamp}-${archiveId.slice(0, 8)}`;
  return { objectKey: `${base}.parquet`, manifestKey: `${base}.manifest.json` };
}
