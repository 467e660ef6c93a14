import type { Context, MiddlewareHandler } from 'hono';
import type { Scope } from '../../store/api-keys.repo.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, errors, withDb } from '../errors.ts';
import type { KeyResolver, Principal } from '../key-resolver.ts';
import { clientIp } from './audit.ts';

/**
 * The key a request's headers carry: `x-api-key`, `Authorization: Bearer KEY`, or
 * `Authorization: Basic base64(KEY:)` (Segment's write key as the user name; the password
 * is ignored, ARCHITECTURE §12).
 */
export function presentedKey(header: (name: string) => string | undefined): string | undefined {
  const direct = header('x-api-key');
  if (direct) return direct.trim();
  const auth = header('authorization');
  if (!auth) return undefined;
  if (/^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, '').trim();
  if (/^basic\s+/i.test(auth)) {
    const decoded = Buffer.from(auth.replace(/^basic\s+/i, '').trim(), 'base64').toString('utf8');
    const user = decoded.split(':', 1)[0]?.trim();
    return user || undefined;
  }
  return undefined;
}

/** The caller's principal: 401 without a known key, 503 when it cannot be checked. Never logs the key. */
async function principalOf(c: Context<AppEnv>, resolver: KeyResolver): Promise<Principal> {
  const known = c.get('principal');
  if (known) return known;
  // `bodyKey`: a Segment call's `writeKey`, read before authentication on those routes only.
  const key = presentedKey((n) => c.req.header(n)) ?? c.get('bodyKey');
  const principal = await principalFor(resolver, key, c.get('clientAddress'));
  c.set('principal', principal);
  return principal;
}

/** The principal of a presented key: 401 without one or for an unknown key, 503 when it cannot be checked. */
export async function principalFor(
  resolver: KeyResolver,
  key: string | undefined,
  address: string | null | undefined,
): Promise<Principal> {
  if (!key) {
    throw new ApiError('unauthorized', 401, 'missing API key (x-api-key, Authorization: Bearer or Basic)');
  }
  // Only an unreachable database is a 503 (`auth_unavailable`); any other failure is a 500.
  // An address that failed too often is a 429 (`auth_throttled`, from the resolver).
  const principal = await withDb(() => resolver.resolve(key, address), errors.authUnavailable);
  if (!principal) throw new ApiError('unauthorized', 401, 'unknown, revoked or expired API key');
  return principal;
}

/** 403 unless `principal` carries `scope`. */
export function checkScope(principal: Principal, scope: Scope): void {
  if (!principal.scopes.includes(scope)) {
    throw new ApiError('forbidden', 403, `this key lacks the "${scope}" scope`);
  }
}

/**
 * Sets `clientAddress` (the socket's peer, or with `trustProxy` the first X-Forwarded-For
 * entry, as the audit trail records it), which the failed-authentication throttle counts by.
 */
export function clientAddress(trustProxy: boolean): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    c.set('clientAddress', clientIp(c, trustProxy));
    await next();
  };
}

/**
 * Requires a valid key (401 otherwise) and sets `principal`. Mounted on `/v1/*` ahead of
 * `rateLimit`, so every authenticated request is counted once, whatever its route.
 */
export function authenticate(resolver: KeyResolver): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    await principalOf(c, resolver);
    await next();
  };
}

/**
 * Requires a valid key carrying `scope`: 401 without a known key, 403 without the scope.
 * Reuses the principal `authenticate` set; on its own (outside `/v1/*`) it authenticates
 * too, but then nothing counts the request against a rate limit.
 */
export function requireScope(resolver: KeyResolver, scope: Scope): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    checkScope(await principalOf(c, resolver), scope);
    await next();
  };
}

/**
 * Requires a valid key carrying at least one of `scopes`: 401 without a known key, 403
 * without any of them. Like {@link requireScope} outside `/v1/*`, nothing counts the
 * request against a rate limit.
 */
export function requireAnyScope(resolver: KeyResolver, scopes: readonly Scope[]): MiddlewareHandler<AppEnv> {
  const names = scopes.map((s) => `"${s}"`).join(' or ');
  return async (c, next) => {
    const principal = await principalOf(c, resolver);
    if (!scopes.some((s) => principal.scopes.includes(s))) {
      throw new ApiError('forbidden', 403, `this key lacks the ${names} scope`);
    }
    await next();
  };
}
