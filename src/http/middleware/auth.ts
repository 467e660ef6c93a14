import type { MiddlewareHandler } from 'hono';
import type { Scope } from '../../store/api-keys.repo.ts';
import type { AppEnv } from '../env.ts';
import { ApiError } from '../errors.ts';
import type { KeyResolver } from '../key-resolver.ts';

function presentedKey(header: (name: string) => string | undefined): string | undefined {
  const direct = header('x-api-key');
  if (direct) return direct.trim();
  const auth = header('authorization');
  if (auth && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, '').trim();
  return undefined;
}

/** Requires a valid key carrying `scope`: 401 without a known key, 403 without the scope. */
export function requireScope(resolver: KeyResolver, scope: Scope): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const key = presentedKey((n) => c.req.header(n));
    if (!key) throw new ApiError('unauthorized', 401, 'missing API key (x-api-key or Authorization: Bearer)');
    let principal: Awaited<ReturnType<KeyResolver['resolve']>>;
    try {
      principal = await resolver.resolve(key);
    } catch {
      throw new ApiError('auth_unavailable', 503, 'cannot verify the API key right now; retry later', {
        retryAfter: 5,
      });
    }
    if (!principal) throw new ApiError('unauthorized', 401, 'unknown or revoked API key');
    if (!principal.scopes.includes(scope)) {
      throw new ApiError('forbidden', 403, `this key lacks the "${scope}" scope`);
    }
    c.set('principal', principal);
    await next();
  };
}
