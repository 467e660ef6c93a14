/**
 * Redis answers many commands (XINFO, HGETALL under RESP2, a stream entry's fields, and,
 * with ioredis's "legacy" reply mapping, every RESP3 map) as one flat list alternating
 * name and value. These read such a list; every reply is untrusted shape-wise (a failed
 * or foreign command may hand back anything), so nothing here throws.
 */

/**
 * `[name1, value1, name2, value2, …]` → `[[name1, value1], …]`, names as strings, values
 * as they are (nested replies such as XINFO STREAM's `first-entry` stay arrays). A trailing
 * name without a value is dropped; anything but an array gives no pairs.
 */
export function pairs(flat: unknown): [string, unknown][] {
  if (!Array.isArray(flat)) return [];
  const out: [string, unknown][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([String(flat[i]), flat[i + 1]]);
  return out;
}

/** A flat reply as an object (see {@link pairs}); a repeated name keeps its last value. */
export function record(flat: unknown): Record<string, unknown> {
  return Object.fromEntries(pairs(flat));
}

/**
 * A stream entry's fields (`[field, value, …]`, both strings) as an object; a value that is
 * not a string (never written by Tributary) is read as text.
 */
export function entryFields(flat: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of pairs(flat)) out[name] = String(value);
  return out;
}

/**
 * The element of a list of flat replies (XINFO GROUPS: one per group) whose `name` is
 * `name`, as an object; undefined when there is none or the reply is not a list.
 */
export function findNamed(list: unknown, name: string): Record<string, unknown> | undefined {
  if (!Array.isArray(list)) return undefined;
  for (const item of list) {
    const fields = record(item);
    if (fields.name === name) return fields;
  }
  return undefined;
}
