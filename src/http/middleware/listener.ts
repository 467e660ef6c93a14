import type { Context, MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env.ts';
import { ApiError } from '../errors.ts';

/** The listener a request came in on, set by the server only when ADMIN_PORT splits them. */
export type Listener = 'public' | 'admin';

/** Served only on the admin listener when there is one: metrics, admin routes, health details. */
const ADMIN_ONLY = /^\/(?:(?:metrics|v1\/admin)(?:\/|$)|health(?:\/(?:buffer|database|business))?\/?$)/;
/**
 * Served on both: `/health/live`, so a probe can check the admin listener too; the web
 * console's page, files and `whoami`, so an operator can sign in on either port (each page
 * then uses what its port serves: the live view the public one, pipeline health the admin one).
 */
const BOTH = /^\/(?:health\/live|v1\/whoami|assets\/[^/]+)?$/;

/** Whether `path` is answered on both listeners when ADMIN_PORT splits them. */
export const servedOnBothListeners = (path: string): boolean => BOTH.test(path);

export function listenerOf(c: Context<AppEnv>): Listener | undefined {
  return (c.env as { listener?: Listener } | undefined)?.listener;
}

/**
 * With ADMIN_PORT set: `/metrics`, `/v1/admin/*` and the health details (`/health`,
 * `/health/buffer`, `/health/database`, `/health/business`) answer only on the admin
 * listener, everything else only on the public one (`/health/live` and the console on both); the other gets the usual 404, so the public
 * port does not even tell that admin routes exist. Without it, this does nothing.
 */
export function splitListeners(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const listener = listenerOf(c);
    const path = c.req.path;
    if (
      listener === undefined ||
      servedOnBothListeners(path) ||
      ADMIN_ONLY.test(path) === (listener === 'admin')
    ) {
      return next();
    }
    throw new ApiError('not_found', 404, `no route for ${c.req.method} ${path}`);
  };
}
