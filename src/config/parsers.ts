import { Cron } from 'croner';
import { z } from 'zod';

// The value parsers config.ts builds its schema from: each takes the raw environment string.

/** `service=days,service=days` → map; every value a positive whole number of days. */
export const retentionOverrides = z
  .string()
  .default('')
  .transform((raw, ctx) => {
    const out: Record<string, number> = {};
    for (const part of raw.split(',').map((s) => s.trim())) {
      if (part === '') continue;
      const match = /^([A-Za-z0-9._-]{1,64})=(\d{1,5})$/.exec(part);
      if (!match?.[1] || !match[2] || Number(match[2]) < 1) {
        ctx.addIssue({ code: 'custom', message: `"${part}" is not service=days` });
        return z.NEVER;
      }
      out[match[1]] = Number(match[2]);
    }
    return out;
  });

/** A whole number in [min, max], `def` when unset. */
export const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(def);

/** `true`/`false`, `1`/`0` or `yes`/`no`; `def` when unset. */
export const bool = (def: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .default(def ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** Five or six cron fields, or one of croner's nicknames (`@daily`, `@hourly`, …). */
export function isCron(v: string): boolean {
  try {
    new Cron(v, { paused: true, timezone: 'UTC' }).stop();
    return true;
  } catch {
    return false;
  }
}

/** A URL with one of `protocols`, `def` when unset. */
export const url = (def: string, protocols: string[]) =>
  z
    .string()
    .default(def)
    .refine(
      (v) => {
        try {
          return protocols.includes(new URL(v).protocol);
        } catch {
          return false;
        }
      },
      `must be a ${protocols.join(' or ')} URL`,
    );

/** Splits a comma-separated list; blanks and surrounding spaces are dropped. */
const splitList = (v: string): string[] =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** A comma-separated list of names, `def` when unset. */
export const commaList = (def: string) => z.string().default(def).transform(splitList);

/** Comma-separated `host:port` seeds (IPv6 hosts in brackets). */
export const hostPortList = () =>
  z.string().transform((v, ctx) => {
    const nodes = splitList(v);
    for (const n of nodes) {
      if (!/^[A-Za-z0-9.:[\]-]+:\d{1,5}$/.test(n)) {
        ctx.addIssue({ code: 'custom', message: `"${n}" is not host:port` });
        return z.NEVER;
      }
    }
    return nodes;
  });
