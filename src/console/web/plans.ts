// The tracking-plans page's pure parts: the API's shapes, JSON typed into a textarea, and what
// a dry run's answer says of the one event tried. No DOM, so unit tests can import it.

export interface PlanType {
  type: string;
  version: number;
  createdAt: string;
}

/** `GET /v1/schemas` (one of its services). */
export interface ServicePlan {
  service: string;
  mode: 'off' | 'warn' | 'reject';
  unknownTypes: 'allow' | 'warn' | 'reject';
  types: PlanType[];
}

/** `GET /v1/schemas/:service/:type`. */
export interface StoredSchema {
  service: string;
  type: string;
  version: number;
  createdAt: string;
  deletedAt: string | null;
  schema: Record<string, unknown>;
  versions: { version: number; createdAt: string; deletedAt: string | null }[];
}

export interface Detail {
  path: string;
  code: string;
  message: string;
}

interface Refusal {
  code: string;
  message: string;
  details?: Detail[];
}

/** `POST /v1/events/validate`'s answer, the parts the page reads. */
export interface DryRunAnswer {
  results: ({ index: number; status: string; warning?: Refusal } & Partial<Refusal>)[];
}

/** What one tried event would get: stored, stored but flagged, or refused, and why. */
export interface Verdict {
  kind: 'accepted' | 'flagged' | 'refused';
  headline: string;
  code?: string;
  message?: string;
  details: Detail[];
}

/** A JSON object typed by a person, or why it is not one. */
export function parseJsonObject(
  text: string,
): { ok: true; value: Record<string, unknown> } | { ok: false; message: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, message: 'it must be an object, {…}' };
  }
  return { ok: true, value: value as Record<string, unknown> };
}

/** The verdict on the first (only) event of a dry run. */
export function verdictOf(answer: DryRunAnswer): Verdict | undefined {
  const result = answer.results[0];
  if (!result) return undefined;
  if (result.status === 'rejected') {
    return {
      kind: 'refused',
      headline: 'Would be refused:',
      code: result.code ?? '',
      message: result.message ?? '',
      details: result.details ?? [],
    };
  }
  if (result.warning) {
    return {
      kind: 'flagged',
      headline: 'Would be stored, flagged:',
      code: result.warning.code,
      message: result.warning.message,
      details: result.warning.details ?? [],
    };
  }
  const headline =
    result.status === 'duplicate'
      ? 'Would be answered duplicate (its id was seen recently); it passes the plan.'
      : `Would be ${result.status}: it passes the plan.`;
  return { kind: 'accepted', headline, details: [] };
}
