import type { LiveOutcome, RecordHeader } from './entry.ts';

/** What a listener asked for; an empty list means "any". */
export interface LiveFilters {
  service: string[];
  type: string[];
  outcome: LiveOutcome[];
}

/** Who listens: the key's id and its services (null: every service). */
export interface Viewer {
  keyId: string;
  services: readonly string[] | null;
}

/**
 * `?a=x,y&a=z` → `['x', 'y', 'z']`: a query parameter that may repeat and hold comma-separated
 * values, trimmed, without empties or repeats.
 */
export function listParam(raw: string | readonly string[] | undefined): string[] {
  if (raw === undefined) return [];
  const values = (typeof raw === 'string' ? [raw] : raw).flatMap((v) => v.split(','));
  return [...new Set(values.map((v) => v.trim()).filter((v) => v !== ''))];
}

const intersects = (a: readonly string[], b: ReadonlySet<string>) => a.some((s) => b.has(s));

/**
 * Whether `viewer` may see a record (ARCHITECTURE §11): a key with no services sees every
 * record; a key with services sees one of its services, one with no service whose sending
 * key's services meet its own (a team sees refusals of its malformed events), and any
 * record sent with its own key.
 */
export function visibleTo(viewer: Viewer, header: RecordHeader): boolean {
  const services = viewer.services;
  if (services === null) return true;
  const [, service, , keyId, keyServices] = header;
  if (keyId !== null && keyId === viewer.keyId) return true;
  if (service !== null) return services.includes(service);
  return keyServices?.some((s) => services.includes(s)) ?? false;
}

/**
 * One predicate for a listener's filters and visibility, built once per connection. A
 * `service` filter also matches a record with no service whose sending key is bound to a
 * filtered service, as visibility does.
 */
export function recordFilter(viewer: Viewer, filters: LiveFilters): (header: RecordHeader) => boolean {
  const services = filters.service.length > 0 ? new Set(filters.service) : undefined;
  const types = filters.type.length > 0 ? new Set(filters.type) : undefined;
  const outcomes = filters.outcome.length > 0 ? new Set<string>(filters.outcome) : undefined;
  return (header) => {
    const [outcome, service, type, , keyServices] = header;
    if (outcomes && !outcomes.has(outcome)) return false;
    if (types && (type === null || !types.has(type))) return false;
    if (services) {
      const inService =
        service !== null ? services.has(service) : keyServices !== null && intersects(keyServices, services);
      if (!inService) return false;
    }
    return visibleTo(viewer, header);
  };
}
