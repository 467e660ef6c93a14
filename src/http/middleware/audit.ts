import { isIP } from 'node:net';
import type { Context, MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import type { Logger } from 'pino';
import type { AuditOutcome, AuditRecord } from '../../store/audit.repo.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import type { AppEnv } from '../env.ts';
import { toApiError } from '../errors.ts';

/** Admin and compliance calls: every request under these is written to `audit_log`. */
export const AUDITED_PATHS = /^\/v1\/(?:admin|users|dsar|schemas)(?:\/|$)/;

/** Last path segments that name an operation rather than a resource (`POST …/retention/run`). */
const OPERATIONS = new Set(['run', 'replay', 'rotate', 'export', 'restore', 'revoke']);
const VERBS: Record<string, string> = { POST: 'create', PUT: 'set', PATCH: 'update', DELETE: 'delete' };

/**
 * The stable name of a route: its static segments after `/v1` (and `/admin`), joined by
 * dots, then what the method does to them. `POST /v1/admin/keys` → `keys.create`,
 * `GET /v1/admin/keys/:id` → `keys.get`, `GET /v1/admin/keys` → `keys.list`,
 * `POST /v1/admin/retention/run` → `retention.run`,
 * `DELETE /v1/users/:userId/events` → `users.events.delete`; `unmatched` when no route answered.
 */
export function actionName(method: string, pattern: string | undefined): string {
  if (!pattern) return 'unmatched';
  const segments = pattern.split('/').filter(Boolean);
  if (segments[0] === 'v1') segments.shift();
  if (segments[0] === 'admin') segments.shift();
  const lastIsParam = segments.at(-1)?.startsWith(':') ?? false;
  const names = segments.filter((s) => !s.startsWith(':') && s !== '*');
  const last = names.at(-1);
  if (!lastIsParam && last && OPERATIONS.has(last)) return names.join('.');
  const verb = method === 'GET' || method === 'HEAD' ? (lastIsParam ? 'get' : 'list') : VERBS[method];
  return [...names, verb ?? method.toLowerCase()].join('.');
}

export function outcomeOf(status: number): AuditOutcome {
  if (status === 401 || status === 403) return 'denied';
  return status < 400 ? 'ok' : 'error';
}

/**
 * The caller's address: the socket's peer, or with `trustProxy` the first entry of
 * X-Forwarded-For when it is an IP address (the load balancer must set or overwrite it).
 */
export function clientIp(c: Context<AppEnv>, trustProxy: boolean): string | null {
  return clientIpOf(
    trustProxy ? c.req.header('x-forwarded-for') : undefined,
    c.env?.incoming?.socket?.remoteAddress,
  );
}

/** {@link clientIp} from the X-Forwarded-For header (only when the proxy is trusted) and the socket's peer. */
export function clientIpOf(forwardedFor: string | undefined, peer: string | undefined): string | null {
  const first = forwardedFor?.split(',')[0]?.trim();
  if (first && isIP(first)) return first;
  if (!peer) return null;
  return peer.startsWith('::ffff:') && isIP(peer.slice(7)) === 4 ? peer.slice(7) : peer;
}

/** A character PostgreSQL text cannot hold (NUL), another control character, or a lone surrogate. */
const UNSTORABLE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
  /[\u0000-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** What {@link escapeForAudit} encodes: the above, and `%` itself so that decoding is exact. */
const ESCAPED = new RegExp(`%|${UNSTORABLE.source}`, 'g');

/**
 * `value` as the audit log can store it: unchanged when it holds nothing {@link UNSTORABLE};
 * otherwise percent-encoded, reversibly: `%` → `%25`, a control character → `%XX` (`%00`
 * for NUL), a lone surrogate → `%uXXXX`; every other character as it was. The row then names
 * the field in `details.escaped`, so a reader knows to decode it.
 */
export function escapeForAudit(value: string): { text: string; escaped: boolean } {
  if (!UNSTORABLE.test(value)) return { text: value, escaped: false };
  const text = value.replace(ESCAPED, (ch) => {
    const code = ch.charCodeAt(0);
    return code < 0x80
      ? `%${code.toString(16).toUpperCase().padStart(2, '0')}`
      : `%u${code.toString(16).toUpperCase()}`;
  });
  return { text, escaped: true };
}

/** The first `max` UTF-16 units of `value`, without cutting a surrogate pair in two. */
function clip(value: string, max: number): string {
  if (value.length <= max) return value;
  const code = value.charCodeAt(max - 1);
  return value.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

/** The handler that answered (not a middleware), with its params. */
function matchedRoute(c: Context<AppEnv>): { pattern: string; target: string | null } | undefined {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const route = routes[i];
    if (!route || route.method === 'ALL') continue;
    // `param()` reads the params of the route at `routeIndex`; look at this one, then put it back.
    const current = c.req.routeIndex;
    c.req.routeIndex = i;
    const params = Object.values(c.req.param() as Record<string, string>);
    c.req.routeIndex = current;
    const target = params.at(-1);
    return { pattern: route.path, target: target === undefined ? null : clip(target, 256) };
  }
  return undefined;
}

/** The `code` of an error response: thrown (as `app.onError` answered it), or returned as the contract's body. */
async function errorCode(c: Context<AppEnv>): Promise<string | undefined> {
  if (c.error) return toApiError(c.error, c).code;
  if (c.res.status < 400 || !c.res.headers.get('content-type')?.includes('json')) return undefined;
  try {
    const body = (await c.res.clone().json()) as { error?: { code?: unknown } } | null;
    return typeof body?.error?.code === 'string' ? body.error.code.slice(0, 64) : undefined;
  } catch {
    return undefined;
  }
}

/** The row for a call that has been answered. */
export async function auditRecord(c: Context<AppEnv>, trustProxy: boolean, ms: number): Promise<AuditRecord> {
  const status = c.res.status;
  const route = matchedRoute(c);
  const error = await errorCode(c);
  const userAgent = c.req.header('user-agent');
  const path = escapeForAudit(clip(c.req.path, 1024));
  const target = route?.target == null ? null : escapeForAudit(route.target);
  const escaped = [...(path.escaped ? ['path'] : []), ...(target?.escaped ? ['target'] : [])];
  return {
    keyId: c.get('principal')?.keyId ?? null,
    action: actionName(c.req.method, route?.pattern),
    method: c.req.method,
    path: path.text,
    target: target?.text ?? null,
    ip: clientIp(c, trustProxy),
    status,
    outcome: outcomeOf(status),
    requestId: c.get('requestId') ?? null,
    details: {
      ...(route ? { route: route.pattern } : {}),
      ...(error ? { error } : {}),
      ...(userAgent ? { userAgent: userAgent.slice(0, 256) } : {}),
      ...(escaped.length > 0 ? { escaped } : {}),
      ms: Math.round(ms * 10) / 10,
    },
  };
}

export interface AuditTrailOptions {
  /** Writes one row (`appendAudit` bound to the database). */
  append: (record: AuditRecord) => Promise<void>;
  logger: Logger;
  metrics: Pick<Metrics, 'auditWriteFailures'>;
  trustProxy: boolean;
  /** Longest a response waits for its row; a slower write finishes (or fails) in the background. */
  waitMs?: number;
}

/**
 * Appends one `audit_log` row per admin or compliance call ({@link AUDITED_PATHS}),
 * refused ones included, once the response is known. Mount it before the routes and
 * outside the auth middleware, so that 401/403/429 are recorded too. A failed write
 * never fails the call: it is logged with the row it would have written (but its path and
 * target, which can name a subject) and counted in
 * `tributary_audit_write_failures_total`. Whatever bytes the path holds, the row can be
 * stored: see {@link escapeForAudit}.
 */
export function auditTrail(opts: AuditTrailOptions): MiddlewareHandler<AppEnv> {
  const waitMs = opts.waitMs ?? 2_000;
  return async (c, next) => {
    if (!AUDITED_PATHS.test(c.req.path)) return next();
    const start = performance.now();
    await next();
    const record = await auditRecord(c, opts.trustProxy, performance.now() - start);
    const written = opts.append(record).catch((err: unknown) => {
      opts.metrics.auditWriteFailures.inc();
      // The row as far as a log may hold it: no path or target, which can name a subject.
      const { path: _path, target: _target, ...loggable } = record;
      (c.get('baseLogger') ?? opts.logger).warn({ err, audit: loggable }, 'audit write failed');
    });
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs);
    });
    await Promise.race([written, waited]);
    clearTimeout(timer);
  };
}
