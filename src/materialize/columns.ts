import { createHash } from 'node:crypto';

/**
 * Names and types of a materialisation's typed columns (ARCHITECTURE §17): pure decisions,
 * no I/O. PostgreSQL casts the values; this module orders the kinds, names columns and event
 * tables, and plans what a feed batch or a rebuild adds to the catalog.
 */

/** The type of a promoted column: one of four, so that any two have a common wider one. */
export type ColumnKind = 'boolean' | 'bigint' | 'double' | 'text';

const ORDER: readonly ColumnKind[] = ['boolean', 'bigint', 'double', 'text'];
const rank = (kind: ColumnKind): number => ORDER.indexOf(kind);

/**
 * The wider of two kinds, in the order boolean < bigint < double < text: the kind a column
 * needs to hold values of both, so that a path seen with mixed values still gets one type.
 */
export function widen(a: ColumnKind, b: ColumnKind): ColumnKind {
  return rank(a) >= rank(b) ? a : b;
}

/**
 * Whether a value of kind `value` fits a column of kind `column` (value ≤ column in the
 * order): a value that does not fit leaves the typed cell NULL and counts as a conflict.
 */
export function fits(value: ColumnKind, column: ColumnKind): boolean {
  return rank(value) <= rank(column);
}

const SQL_TYPES: Readonly<Record<ColumnKind, string>> = {
  boolean: 'boolean',
  bigint: 'bigint',
  double: 'double precision',
  text: 'text',
};

/** The PostgreSQL type a column of this kind is created with. */
export function sqlType(kind: ColumnKind): string {
  return SQL_TYPES[kind];
}

/** PostgreSQL's reserved key words and its system column names: never usable unquoted. */
const POSTGRES_RESERVED = `all analyse analyze and any array as asc asymmetric both case cast check collate
  column constraint create current_catalog current_date current_role current_time current_timestamp
  current_user default deferrable desc distinct do else end except false fetch for foreign from grant group
  having in initially intersect into lateral leading limit localtime localtimestamp not null offset on only
  or order placing primary references returning select session_user some symmetric table then to trailing
  true union unique user using variadic when where window with oid tableoid xmin xmax cmin cmax ctid`
  .trim()
  .split(/\s+/);

/**
 * Names a promoted column never takes: the fixed columns of every materialised table
 * (including the `users` / `accounts` bookkeeping columns), PostgreSQL's reserved words and
 * its system columns. A property with such a name gets a `_` prefix instead.
 */
export const RESERVED_COLUMNS: ReadonlySet<string> = new Set([
  ...['id', 'service', 'occurred_at', 'received_at', 'user_id', 'anonymous_id', 'event', 'properties'],
  ...['traits', 'context', 'metadata', 'key_id', 'name', 'category', 'group_id', 'previous_id'],
  ...['state', 'first_seen_at', 'last_seen_at', '_feed_xid', '_feed_seq'],
  ...POSTGRES_RESERVED,
]);

/**
 * Names an event table never takes: the fixed tables of a materialisation and PostgreSQL's
 * reserved words, so that an event called "Users" cannot land in the `users` table.
 */
export const RESERVED_TABLES: ReadonlySet<string> = new Set([
  ...['tracks', 'pages', 'screens', 'identifies', 'groups', 'aliases', 'users', 'accounts'],
  ...['identity_links', 'daily_counts'],
  ...POSTGRES_RESERVED,
]);

/** PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes; longer names are silently cut. */
const MAX_BYTES = 63;

/**
 * snake_case of a flattened path: camelCase and PascalCase split, every run of characters
 * other than ASCII letters and digits one `_` (non-ASCII letters included), lower-cased after
 * that (so no non-ASCII letter can lower-case into ASCII, like the Kelvin sign into `k`).
 */
function snake(text: string): string {
  return text
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .replace(/[^A-Za-z0-9]+/g, '_')
    .toLowerCase()
    .replace(/^_+|_+$/g, '');
}

/** 8 hex characters of SHA-256 of the path's elements joined by NUL (and the counter's, when one). */
function hashOf(path: readonly string[], counter?: number): string {
  const parts = counter === undefined ? path : [...path, String(counter)];
  return createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 8);
}

/** `base` (ASCII by then) cut to leave room for `_<hash>`, and suffixed: at most 63 bytes. */
const suffixed = (base: string, hash: string): string =>
  `${base.slice(0, MAX_BYTES - hash.length - 1)}_${hash}`;

/**
 * The PostgreSQL identifier of a JSON path (nested objects flattened: ['address','city'] →
 * 'address_city'), so that a warehouse user can query properties without quoting: snake_case
 * of [a-z0-9_] ('orderId' → 'order_id', 'HTMLParser' → 'html_parser', empty → '_'),
 * `_`-prefixed when it starts with a digit or is in `reserved`, at most 63 bytes (cut and
 * suffixed with 8 hex characters of the path's SHA-256), and never in `taken` (then suffixed
 * with the path's hash, or, if that is taken too, the hash of the path and a counter 2, 3, …).
 * Deterministic: the same (path, reserved, taken) always gives the same name.
 */
export function identifierFor(
  path: readonly string[],
  reserved: ReadonlySet<string>,
  taken: ReadonlySet<string>,
): string {
  let base = snake(path.join('_')) || '_';
  if (/^[0-9]/.test(base) || reserved.has(base)) base = `_${base}`;
  if (base.length > MAX_BYTES) base = suffixed(base, hashOf(path));
  const free = (name: string) => !taken.has(name) && !reserved.has(name);
  if (free(base)) return base;
  const first = suffixed(base, hashOf(path));
  if (free(first)) return first;
  for (let counter = 2; ; counter++) {
    const candidate = suffixed(base, hashOf(path, counter));
    if (free(candidate)) return candidate;
  }
}

/** One promoted property of a table, as the catalog keeps it. */
export interface CatalogColumn {
  /** The JSON path inside the table's source object (properties or traits). */
  path: string[];
  /** Its identifier in the table, made by identifierFor and never renamed. */
  column: string;
  /** The column's type as created; never changed in place (no locking ALTER … TYPE). */
  kind: ColumnKind;
  /** The widest kind seen so far (≥ kind): a rebuild creates the column as this. */
  wanted: ColumnKind;
}

/** What a batch saw of one path: the kind of one of its values (the same path may recur). */
export interface ObservedPath {
  /** The JSON path inside the table's source object. */
  path: string[];
  /** The kind of a value found there. */
  kind: ColumnKind;
}

/** What a feed batch changes in one table's catalog, for the caller to apply. */
export interface ColumnPlan {
  /** Columns to add now (ALTER TABLE … ADD COLUMN), in path order. */
  added: CatalogColumn[];
  /** Existing columns whose `wanted` kind grows, with the new `wanted` (the column itself stays). */
  widened: CatalogColumn[];
  /** Paths not promoted because the table reached `maxColumns` promoted columns, in path order. */
  overCap: string[][];
}

const pathKey = (path: readonly string[]): string => JSON.stringify(path);

/** Paths compared element by element as strings (UTF-16 order), a prefix first. */
function comparePaths(a: readonly string[], b: readonly string[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i] as string;
    const y = b[i] as string;
    if (x !== y) return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** The observed paths, each once at its widest kind, in path order: the input order never matters. */
function merged(observed: readonly ObservedPath[]): ObservedPath[] {
  const byPath = new Map<string, ObservedPath>();
  for (const o of observed) {
    const key = pathKey(o.path);
    const held = byPath.get(key);
    if (held) held.kind = widen(held.kind, o.kind);
    else byPath.set(key, { path: [...o.path], kind: o.kind });
  }
  return [...byPath.values()].sort((a, b) => comparePaths(a.path, b.path));
}

/**
 * Decides what a batch adds to a table's catalog: each observed path not in `existing` gets
 * a column of its widest kind in the batch (named against the existing and already-added
 * names and RESERVED_COLUMNS), until the table has `maxColumns` promoted columns in all; the
 * rest are listed in overCap and stay in the jsonb only. An observed kind wider than an
 * existing column's `wanted` widens `wanted`. The same for any order of `observed`.
 */
export function planColumns(
  existing: readonly CatalogColumn[],
  observed: readonly ObservedPath[],
  maxColumns: number,
): ColumnPlan {
  const byPath = new Map(existing.map((c) => [pathKey(c.path), c]));
  const taken = new Set(existing.map((c) => c.column));
  const plan: ColumnPlan = { added: [], widened: [], overCap: [] };
  let count = existing.length;
  for (const o of merged(observed)) {
    const held = byPath.get(pathKey(o.path));
    if (held) {
      if (!fits(o.kind, held.wanted)) plan.widened.push({ ...held, path: [...held.path], wanted: o.kind });
    } else if (count >= maxColumns) {
      plan.overCap.push(o.path);
    } else {
      const column = identifierFor(o.path, RESERVED_COLUMNS, taken);
      taken.add(column);
      plan.added.push({ path: o.path, column, kind: o.kind, wanted: o.kind });
      count++;
    }
  }
  return plan;
}

/**
 * For a rebuild: the columns a table gets from all of its data at once, each created at its
 * final type so no value conflicts for want of widening. Every observed path, of its widest
 * kind (or its catalog entry's `wanted`, when wider); named as `existing` named it (names are
 * stable across rebuilds), else by identifierFor, never taking a name the catalog gave another
 * path. Catalog paths no longer in the data get no column. Same cap as planColumns: catalog
 * paths first, then new ones, each in path order. Returned with kind = wanted.
 */
export function planRebuild(
  existing: readonly CatalogColumn[],
  observed: readonly ObservedPath[],
  maxColumns: number,
): CatalogColumn[] {
  const seen = new Map(merged(observed).map((o) => [pathKey(o.path), o]));
  const taken = new Set(existing.map((c) => c.column));
  const out: CatalogColumn[] = [];
  for (const c of [...existing].sort((a, b) => comparePaths(a.path, b.path))) {
    const o = seen.get(pathKey(c.path));
    if (!o) continue;
    seen.delete(pathKey(c.path));
    if (out.length >= maxColumns) continue;
    const kind = widen(o.kind, c.wanted);
    out.push({ path: [...c.path], column: c.column, kind, wanted: kind });
  }
  for (const o of seen.values()) {
    if (out.length >= maxColumns) break;
    const column = identifierFor(o.path, RESERVED_COLUMNS, taken);
    taken.add(column);
    out.push({ path: o.path, column, kind: o.kind, wanted: o.kind });
  }
  return out;
}

/**
 * Which event names get a table of their own. Under {max: n}, the first names in the order
 * given (callers pass them by first appearance) until n tables exist, counting those in
 * `existing`; under {allow}, exactly the allowed names among `names`. Returns only the new
 * assignments, name → identifierFor([name], RESERVED_TABLES, taken), where taken is the
 * existing tables plus the ones assigned earlier in this call. `existing` maps event name →
 * table already assigned.
 */
export function planEventTables(
  existing: ReadonlyMap<string, string>,
  names: readonly string[],
  rule: { max: number } | { allow: readonly string[] },
): Map<string, string> {
  const taken = new Set(existing.values());
  const allowed = 'allow' in rule ? new Set(rule.allow) : null;
  const max = 'max' in rule ? rule.max : Number.POSITIVE_INFINITY;
  const out = new Map<string, string>();
  for (const name of names) {
    if (existing.has(name) || out.has(name)) continue;
    if (allowed ? !allowed.has(name) : existing.size + out.size >= max) continue;
    const table = identifierFor([name], RESERVED_TABLES, taken);
    taken.add(table);
    out.set(name, table);
  }
  return out;
}
