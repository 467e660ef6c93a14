import { Hono } from 'hono';
import type pg from 'pg';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { DeadLetterStream } from '../../buffer/dead-letter.ts';
import type { Config } from '../../config.ts';
import type { RetentionService } from '../../retention/service.ts';
import {
  type ApiKeyInfo,
  createApiKey,
  listApiKeys,
  revokeApiKey,
  rotateApiKey,
  SCOPES,
} from '../../store/api-keys.repo.ts';
import { type ArchiveStatus, listArchives } from '../../store/archives.repo.ts';
import type { Db } from '../../store/db.ts';
import { getRun, listRuns } from '../../store/retention-runs.repo.ts';
import { RetentionBusyError } from '../../store/run-leases.repo.ts';
import { bodyKind, parseJson, readBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, errors, withDb } from '../errors.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requireScope } from '../middleware/auth.ts';
import { requestLogger } from '../middleware/request-context.ts';
export interface AdminRoutesDeps {
  config: Pick<Config, 'KEY_ROTATION_OVERLAP_S'>;
  logger: Logger;
  db: Db;
  pool: pg.Pool;
  retention: RetentionService;
  keys: KeyResolver;
  deadLetters: DeadLetterStream;
}

const newKey = z.strictObject({
  name: z.string().trim().min(1).max(128),
  scopes: z.array(z.enum(SCOPES)).min(1),
  rateLimitPerMinute: z.number().int().min(1).max(10_000_000).nullish(),
});

const rotation = z.strictObject({
  overlapSeconds: z
    .number()
    .int()
    .min(0)
    .max(90 * 86_400)
    .optional(),
});

function invalidRequest(message: string, issues: z.core.$ZodIssue[]): ApiError {
  return new ApiError('invalid_request', 400, message, {
    details: issues.map((i) => ({ path: i.path.join('.'), code: i.code, message: i.message })),
  });
}

/** A key as shown once to its owner, with its secret. */
const shownOnce = (key: string, info: ApiKeyInfo) => ({
  id: info.id,
  key,
  name: info.name,
  scopes: info.scopes,
  rateLimitPerMinute: info.rateLimitPerMinute,
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const archiveQuery = z.strictObject({
  month: z
    .string()
    .regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be YYYY-MM')
    .optional(),
  service: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/)
    .optional(),
  status: z.enum(['writing', 'verified', 'complete', 'restored']).optional(),
  limit: z.coerce.number().int().min(1).max(1_000).default(100),
  cursor: z.string().max(200).optional(),
});

function invalidQuery(issues: z.core.$ZodIssue[]): ApiError {
  return new ApiError('invalid_query', 400, 'invalid query parameters', {
    details: issues.map((i) => ({ path: i.path.join('.'), code: i.code, message: i.message })),
  });
}

/** `createdAt|id` of the last archive on a page, base64url. */
const encodeCursor = (createdAt: Date, id: string) =>
  Buffer.from(`${createdAt.toISOString()}|${id}`).toString('base64url');
function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const [at, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  const createdAt = new Date(at ?? '');
  if (!id || !UUID.test(id) || Number.isNaN(createdAt.getTime())) {
    throw new ApiError('invalid_query', 400, 'cursor is not one this API returned');
  }
  return { createdAt, id };
}

/** `/v1/admin/*`: keys and dead letters. Every route needs the `admin` scope. */
export function adminRoutes(deps: AdminRoutesDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use('/v1/admin/*', requireScope(deps.keys, 'admin'));

  app.post('/v1/admin/keys', async (c) => {
    bodyKind(c, ['json']);
    const parsed = newKey.safeParse(parseJson(await readBody(c, 64 * 1024)));
    if (!parsed.success) throw invalidRequest('invalid key request', parsed.error.issues);
    const { key, info } = await withDb(() => createApiKey(deps.db, parsed.data));
    requestLogger(c, deps.logger).info({ keyId: info.id, scopes: info.scopes }, 'api key created');
    return c.json(shownOnce(key, info), 201);
  });

  app.post('/v1/admin/keys/:id/rotate', async (c) => {
    const id = c.req.param('id');
    // The body is optional: no body (or `{}`) takes the configured overlap.
    const raw = (await readBody(c, 64 * 1024)).trim();
    if (raw !== '') bodyKind(c, ['json']);
    const parsed = rotation.safeParse(raw === '' ? {} : parseJson(raw));
    if (!parsed.success) throw invalidRequest('invalid rotation request', parsed.error.issues);
    const overlap = parsed.data.overlapSeconds ?? deps.config.KEY_ROTATION_OVERLAP_S;
    const rotated = UUID.test(id) ? await withDb(() => rotateApiKey(deps.db, id, overlap)) : undefined;
    if (!rotated) throw new ApiError('not_found', 404, 'no active key with this id');
    await deps.keys.keyChanged(id);
    requestLogger(c, deps.logger).info(
      { keyId: rotated.info.id, rotatedFrom: id, oldKeyExpiresAt: rotated.previous.expiresAt },
      'api key rotated',
    );
    return c.json(
      {
        ...shownOnce(rotated.key, rotated.info),
        rotatedFrom: { id, expiresAt: rotated.previous.expiresAt },
      },
      201,
    );
  });

  app.get('/v1/admin/keys', async (c) => {
    return c.json({ keys: await withDb(() => listApiKeys(deps.db)) });
  });

  app.delete('/v1/admin/keys/:id', async (c) => {
    const id = c.req.param('id');
    if (!UUID.test(id) || !(await withDb(() => revokeApiKey(deps.db, id)))) {
      throw new ApiError('not_found', 404, 'no active key with this id');
    }
    await deps.keys.keyChanged(id);
    requestLogger(c, deps.logger).info({ keyId: id }, 'api key revoked');
    return c.body(null, 204);
  });

  app.post('/v1/admin/dead-letter/replay', async (c) => {
    const limit = z.coerce.number().int().min(1).max(100_000).default(10_000).safeParse(c.req.query('limit'));
    if (!limit.success)
      throw new ApiError('invalid_query', 400, 'limit must be a whole number from 1 to 100000');
    try {
      const replayed = await deps.deadLetters.replay(limit.data);
      requestLogger(c, deps.logger).info({ replayed }, 'dead letters replayed');
      return c.json({ replayed });
    } catch {
      throw errors.bufferUnavailable();
    }
  });

  app.post('/v1/admin/retention/run', async (c) => {
    try {
      const { runId } = await withDb(() => deps.retention.start('manual'));
      requestLogger(c, deps.logger).info({ runId }, 'retention pass requested');
      return c.json({ runId, status: 'running' }, 202);
    } catch (err) {
      if (err instanceof RetentionBusyError) {
        throw new ApiError('retention_running', 409, err.message, {
          details: [{ path: 'runId', message: err.runId }],
        });
      }
      throw err;
    }
  });

  app.get('/v1/admin/retention/runs', async (c) => {
    const limit = z.coerce.number().int().min(1).max(100).default(20).safeParse(c.req.query('limit'));
    if (!limit.success) throw invalidQuery(limit.error.issues);
    return c.json({ runs: await withDb(() => listRuns(deps.pool, limit.data)) });
  });

  app.get('/v1/admin/retention/runs/:runId', async (c) => {
    const id = c.req.param('runId');
    const run = UUID.test(id) ? await withDb(() => getRun(deps.pool, id)) : undefined;
    if (!run) throw new ApiError('not_found', 404, 'no retention run with this id');
    return c.json(run);
  });

  app.get('/v1/admin/archives', async (c) => {
    const q = archiveQuery.safeParse(c.req.query());
    if (!q.success) throw invalidQuery(q.error.issues);
    const { month, service, status, limit, cursor } = q.data;
    const rows = await withDb(() =>
      listArchives(deps.pool, {
        limit,
        ...(month ? { month } : {}),
        ...(service ? { service } : {}),
        ...(status ? { status: status as ArchiveStatus } : {}),
        ...(cursor ? { before: decodeCursor(cursor) } : {}),
      }),
    );
    const last = rows.length === limit ? rows[rows.length - 1] : undefined;
    return c.json({
      location: deps.retention.store.location,
      archives: rows,
      nextCursor: last ? encodeCursor(last.createdAt, last.id) : null,
    });
  });

  return app;
}
