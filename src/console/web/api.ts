// Every call the console makes goes through the public API with the signed-in key, so each one
// is authorised, rate limited and (for admin and compliance calls) audited like any client's.

/** Where the key lives: this tab only, gone when it closes; never a cookie, never a URL. */
const KEY_ITEM = 'tributary.console.key';

export type Scope = 'ingest' | 'read' | 'dsar' | 'admin';

/** `GET /v1/whoami`. */
export interface Whoami {
  keyId: string;
  name: string;
  scopes: Scope[];
  /** Empty: every service. */
  services: string[];
}

export interface ErrorDetail {
  path?: string;
  code?: string;
  message: string;
}

/** A refusal from the API, with the contract's `code` (or a client-side one: `network_error`). */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly code: string;
  readonly status: number;
  readonly details: ErrorDetail[];
  readonly requestId: string | undefined;

  constructor(
    code: string,
    status: number,
    message: string,
    details: ErrorDetail[] = [],
    requestId?: string,
  ) {
    super(message);
    this.code = code;
    this.status = status;
    this.details = details;
    this.requestId = requestId;
  }
}

export const storedKey = (): string | null => sessionStorage.getItem(KEY_ITEM);
export const storeKey = (key: string): void => sessionStorage.setItem(KEY_ITEM, key);
export const forgetKey = (): void => sessionStorage.removeItem(KEY_ITEM);

/** Called when the API refuses the stored key (revoked, expired): the shell signs out. */
let onUnauthorized: ((err: ApiError) => void) | undefined;
export function whenUnauthorized(handler: (err: ApiError) => void): void {
  onUnauthorized = handler;
}
/** The stored key was refused (by a call or by the live stream). */
export function reportUnauthorized(err: ApiError): void {
  onUnauthorized?.(err);
}

export function authHeaders(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}` };
}

/** The API's error body as an ApiError; a body that is not one still gives a code. */
export async function errorFrom(res: Response): Promise<ApiError> {
  const fallback = `http_${res.status}`;
  try {
    const body = (await res.json()) as {
      error?: { code?: string; message?: string; details?: ErrorDetail[]; requestId?: string };
    };
    const e = body.error;
    if (e?.code) return new ApiError(e.code, res.status, e.message ?? e.code, e.details ?? [], e.requestId);
  } catch {
    // not JSON: a proxy's page, say
  }
  return new ApiError(fallback, res.status, `${res.status} ${res.statusText}`.trim());
}

export interface CallOptions {
  method?: string;
  body?: unknown;
  /** The key to use; the stored one otherwise. */
  key?: string;
  /** Statuses besides 2xx whose body is the answer (`/health` answers 503 with its report). */
  accept?: number[];
  signal?: AbortSignal;
}

/** One JSON call to the API. Refusals throw {@link ApiError}; a refused stored key also signs out. */
export async function api<T>(path: string, opts: CallOptions = {}): Promise<T> {
  const key = opts.key ?? storedKey();
  const headers: Record<string, string> = { accept: 'application/json', ...(key ? authHeaders(key) : {}) };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, {
      method: opts.method ?? (opts.body === undefined ? 'GET' : 'POST'),
      headers,
      body: opts.body === undefined ? null : JSON.stringify(opts.body),
      signal: opts.signal ?? null,
      // The key is sent explicitly; nothing else (no cookie exists) should go along.
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError('network_error', 0, 'the API could not be reached');
  }
  // 204 (a revoked key, say) has no body to read.
  if (res.status === 204) return undefined as T;
  if (res.ok || opts.accept?.includes(res.status)) return (await res.json()) as T;
  const error = await errorFrom(res);
  if (res.status === 401 && opts.key === undefined) reportUnauthorized(error);
  throw error;
}

/** What a signed-in key can see: `whoami`, or the 401 that refused it. */
export const whoami = (key?: string): Promise<Whoami> =>
  api<Whoami>('/v1/whoami', key === undefined ? {} : { key });

export const hasAnyScope = (who: Whoami, scopes: readonly Scope[]): boolean =>
  scopes.some((s) => who.scopes.includes(s));
