import { formatDuration } from './time.ts';

// The keys page's pure parts: the create form read into the API's request, and what a rotation
// means for the old key. No DOM, so the unit tests import it.

export const SCOPES = ['ingest', 'read', 'dsar', 'admin'] as const;
export type KeyScope = (typeof SCOPES)[number];

/** `POST /v1/admin/keys`'s body. */
export interface NewKeyRequest {
  name: string;
  scopes: KeyScope[];
  services?: string[];
  rateLimitPerMinute?: number;
}

/** The form's fields as typed. */
export interface KeyFormInput {
  name: string;
  scopes: readonly string[];
  services: string;
  rateLimitPerMinute: string;
}

export interface FieldProblem {
  field: keyof KeyFormInput;
  message: string;
}

/** The API's limits (admin-keys.ts): an event's service name, and how many a key may carry. */
const SERVICE = /^[A-Za-z0-9._-]{1,64}$/;
const MAX_SERVICES = 100;
const MAX_NAME = 128;
const MAX_RATE = 10_000_000;

/** Service names typed separated by commas, spaces or new lines; each once, in the order typed. */
export function splitServices(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).filter(Boolean))];
}

/**
 * The form as the API's request, or what to fix. The same rules the API applies, checked
 * here so a mistake is shown beside its field; the API still has the last word.
 */
export function readKeyForm(
  input: KeyFormInput,
): { ok: true; request: NewKeyRequest } | { ok: false; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const name = input.name.trim();
  if (!name) problems.push({ field: 'name', message: 'Give the key a name (who or what uses it).' });
  else if (name.length > MAX_NAME)
    problems.push({ field: 'name', message: `At most ${MAX_NAME} characters.` });

  const scopes = SCOPES.filter((s) => input.scopes.includes(s));
  if (scopes.length === 0) problems.push({ field: 'scopes', message: 'Choose at least one scope.' });

  const services = splitServices(input.services);
  const bad = services.filter((s) => !SERVICE.test(s));
  if (bad.length > 0) {
    problems.push({
      field: 'services',
      message: `Not a service name: ${bad.join(', ')} (1–64 of A–Z a–z 0–9 . _ -).`,
    });
  } else if (services.length > MAX_SERVICES) {
    problems.push({ field: 'services', message: `At most ${MAX_SERVICES} services.` });
  }

  const rateText = input.rateLimitPerMinute.trim();
  const rate = rateText === '' ? undefined : Number(rateText);
  if (rate !== undefined && !(Number.isInteger(rate) && rate >= 1 && rate <= MAX_RATE)) {
    problems.push({
      field: 'rateLimitPerMinute',
      message: `A whole number of events per minute, 1 to ${MAX_RATE.toLocaleString('en')}, or empty.`,
    });
  }

  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    request: {
      name,
      scopes,
      ...(services.length > 0 ? { services } : {}),
      ...(rate !== undefined ? { rateLimitPerMinute: rate } : {}),
    },
  };
}

/** What the rotation means for the old key, from the `rotatedFrom.expiresAt` the API answered. */
export function oldKeyFate(expiresAt: string | null, now: number): string {
  if (expiresAt === null) return 'The old key keeps working until it is revoked.';
  const left = Date.parse(expiresAt) - now;
  if (Number.isNaN(left)) return `The old key stops at ${expiresAt}.`;
  if (left <= 1_000) return 'The old key stopped working at once.';
  return `The old key keeps working for ${formatDuration(left)} more, until ${new Date(expiresAt).toLocaleString()}, then gets 401.`;
}

/** The rotation overlaps the rotate form offers; `undefined` is the server's KEY_ROTATION_OVERLAP_S. */
export const OVERLAPS: readonly { label: string; seconds: number | undefined }[] = [
  { label: 'the server’s setting (KEY_ROTATION_OVERLAP_S)', seconds: undefined },
  { label: 'none: the old key stops now', seconds: 0 },
  { label: '1 hour', seconds: 3_600 },
  { label: '1 day', seconds: 86_400 },
  { label: '7 days', seconds: 7 * 86_400 },
];
