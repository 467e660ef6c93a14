import { Hono } from 'hono';
import { stream } from 'hono/streaming';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { ErasureService } from '../../compliance/erasure.ts';
import { type ExportOptions, exportSubject } from '../../compliance/export.ts';
import type { SubjectRegistry } from '../../compliance/subjects.ts';
import { EVENT_LIMITS } from '../../events/limits.ts';
import { ping } from '../../store/health.repo.ts';
import { optIn, optOut } from '../../store/opt-outs.repo.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, errors, withDb } from '../errors.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requireScope } from '../middleware/auth.ts';
import { requestLogger } from '../middleware/request-context.ts';

export interface DsarRoutesDeps {
  logger: Logger;
  pool: pg.Pool;
  keys: KeyResolver;
  subjects: SubjectRegistry;
  erasure: ErasureService;
  exports: ExportOptions;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function subject(raw: string): string {
  if (raw.length < 1 || raw.length > EVENT_LIMITS.maxUserIdLength || raw.includes('\u0000')) {
    throw new ApiError('invalid_user_id', 400, `userId must be 1–${EVENT_LIMITS.maxUserIdLength} characters`);
  }
  return raw;
}

/** `/v1/users/:userId/*` and `/v1/dsar/*`: erasure, export and opt-out. Every route needs the `dsar` scope. */
export function dsarRoutes(deps: DsarRoutesDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use('/v1/users/*', requireScope(deps.keys, 'dsar'));
  app.use('/v1/dsar/*', requireScope(deps.keys, 'dsar'));
  const keyId = (c: { get(k: 'principal'): { keyId: string } | undefined }) =>
    c.get('principal')?.keyId ?? null;

  app.put('/v1/users/:userId/opt-out', async (c) => {
    const userId = subject(c.req.param('userId'));
    const since = await withDb(() => optOut(deps.pool, userId, keyId(c)));
    await deps.subjects.publish({ op: 'opt_out', userId, at: since.getTime() }).catch(() => {});
    requestLogger(c, deps.logger).info('subject opted out');
    return c.json({ userId, optedOut: true, since: since.toISOString() });
  });

  app.delete('/v1/users/:userId/opt-out', async (c) => {
    const userId = subject(c.req.param('userId'));
    await withDb(() => optIn(deps.pool, userId));
    await deps.subjects.publish({ op: 'opt_in', userId }).catch(() => {});
    return c.json({ userId, optedOut: false });
  });

  app.delete('/v1/users/:userId/events', async (c) => {
    const userId = subject(c.req.param('userId'));
    let requestId: string;
    try {
      requestId = await withDb(() => deps.erasure.request(userId, keyId(c)));
    } catch (err) {
      if (err instanceof ApiError) throw err;
      throw errors.bufferUnavailable();
    }
    requestLogger(c, deps.logger).info({ requestId }, 'erasure requested');
    return c.json({ requestId, status: 'pending' }, 202);
  });

  app.get('/v1/dsar/:requestId', async (c) => {
    const id = c.req.param('requestId');
    const status = UUID.test(id) ? await withDb(() => deps.erasure.status(id)) : undefined;
    if (!status) throw new ApiError('not_found', 404, 'no request with this id');
    return c.json(status);
  });

  app.get('/v1/users/:userId/events/export', async (c) => {
    const userId = subject(c.req.param('userId'));
    // Fail before the 200 when the database is down; later failures end the stream early.
    await withDb(() => ping(deps.pool));
    deps.exports.metrics.dsarRequests.inc({ kind: 'export' });
    c.header('content-type', 'application/x-ndjson; charset=utf-8');
    c.header('cache-control', 'no-store');
    const log = requestLogger(c, deps.logger);
    return stream(
      c,
      async (s) => {
        let bytes = 0;
        for await (const text of exportSubject(deps.exports, userId)) {
          if (s.aborted) break;
          await s.write(text);
          bytes += text.length;
        }
        log.info({ chars: bytes }, 'subject export streamed');
      },
      async (err) => {
        log.error({ err: String(err) }, 'subject export failed midway');
      },
    );
  });

  return app;
}
