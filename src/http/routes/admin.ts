import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { DeadLetterStream } from '../../buffer/dead-letter.ts';
import type { Config } from '../../config.ts';
import { parseRfc3339 } from '../../events/rfc3339.ts';
import type { RetentionService } from '../../retention/service.ts';
import type { SourceSecrets } from '../../sources/secrets.ts';
import { type ArchiveStatus, listArchives } from '../../store/archives.repo.ts';
import type { Db } from '../../store/db.ts';
import { getRun, listRuns } from '../../store/retention-runs.repo.ts';
import { RetentionBusyError } from '../../store/run-leases.repo.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, errors, withBuffer, withDb } from '../errors.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requireScope } from '../middleware/auth.ts';
import { requestLogger } from '../middleware/request-context.ts';
import { createRouter, errorResponses, invalidInput, json, needs, V1_ERRORS } from '../openapi.ts';
import { registerKeyRoutes } from './admin-keys.ts';
import { registerMaterializationRoutes } from './materializations.ts';
import { Archive, ArchiveQuery, RetentionRun } from './retention.schema.ts';
import { registerSourceRoutes, type SourceRoutesDeps } from './sources.ts';

export interface AdminRoutesDeps extends Omit<SourceRoutesDeps, 'secrets' | 'config'> {
  config: Pick<Config, 'KEY_ROTATION_OVERLAP_S'> & SourceRoutesDeps['config'];
  sourceSecrets: SourceSecrets;
  logger: Logger;
  db: Db;
  pool: pg.Pool;
  retention: RetentionService;
  keys: KeyResolver;
  deadLetters: DeadLetterStream;
}

// ---- Declarations -------------------------------------------------------------------------

const unavailable = { 503: 'Also `database_unavailable`' } as const;

export const replayDeadLetters = createRoute({
  method: 'post',
  path: '/v1/admin/dead-letter/replay',
  operationId: 'replayDeadLetters',
  tags: ['admin'],
  summary: 'Move dead-lettered entries back to their stream',
  security: needs('admin'),
  middleware: [invalidInput('invalid_query', 'limit must be a whole number from 1 to 100000')],
  request: { query: z.object({ limit: z.coerce.number().int().min(1).max(100_000).default(10_000) }) },
  responses: {
    200: {
      description: 'How many were replayed',
      content: json(z.strictObject({ replayed: z.number().int() })),
    },
    ...errorResponses([400, ...V1_ERRORS], { 503: 'Also `buffer_unavailable`' }),
  },
});
export type ReplayResult = { replayed: number };

export const startRetention = createRoute({
  method: 'post',
  path: '/v1/admin/retention/run',
  operationId: 'startRetention',
  tags: ['admin'],
  summary: 'Start a retention pass now',
  security: needs('admin'),
  responses: {
    202: {
      description: 'Started; follow it at /v1/admin/retention/runs/{runId}',
      content: json(z.strictObject({ runId: z.guid(), status: z.literal('running') })),
    },
    ...errorResponses([409, ...V1_ERRORS], {
      409: '`retention_running`: another pass runs; `details[0].message` is its run id',
      ...unavailable,
    }),
  },
});

export const listRetentionRuns = createRoute({
  method: 'get',
  path: '/v1/admin/retention/runs',
  operationId: 'listRetentionRuns',
  tags: ['admin'],
  summary: 'Recent retention passes',
  security: needs('admin'),
  request: { query: z.object({ limit: z.coerce.number().int().min(1).max(100).default(20) }) },
  responses: {
    200: {
      description: 'Newest first, without their steps',
      content: json(z.strictObject({ runs: z.array(RetentionRun.omit({ steps: true })) })),
    },
    ...errorResponses([400, ...V1_ERRORS], unavailable),
  },
});

export const getRetentionRun = createRoute({
  method: 'get',
  path: '/v1/admin/retention/runs/{runId}',
  operationId: 'getRetentionRun',
  tags: ['admin'],
  summary: 'One retention pass, with its steps',
  security: needs('admin'),
  request: { params: z.object({ runId: z.string().openapi({ description: 'A run id (a UUID)' }) }) },
  responses: {
    200: { description: 'The pass', content: json(RetentionRun) },
    ...errorResponses(V1_ERRORS, { 404: 'No retention run with this id', ...unavailable }),
  },
});

export const listArchivesRoute = createRoute({
  method: 'get',
  path: '/v1/admin/archives',
  operationId: 'listArchives',
  tags: ['admin'],
  summary: 'Archived partitions with row counts, bytes and checksums',
  security: needs('admin'),
  request: { query: ArchiveQuery },
  responses: {
    200: {
      description: 'Newest first, keyset-paginated',
      content: json(
        z.strictObject({
          location: z.string().openapi({ example: 's3://bucket' }),
          archives: z.array(Archive),
          nextCursor: z.string().nullable(),
        }),
      ),
    },
    ...errorResponses([400, ...V1_ERRORS], { ...unavailable, 400: '`invalid_query`, `invalid_cursor`' }),
  },
});

// ---- Handlers -----------------------------------------------------------------------------

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `createdAt|id` of the last archive on a page, base64url. */
const encodeCursor = (createdAt: Date, id: string) =>
  Buffer.from(`${createdAt.toISOString()}|${id}`).toString('base64url');
/** A cursor made by `encodeCursor`, exactly: anything else (a date PostgreSQL cannot hold included) is refused. */
function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const parts = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  const [at, id] = parts;
  const ms = parseRfc3339(at ?? '');
  if (parts.length !== 2 || !id || !UUID.test(id) || ms === undefined) throw errors.invalidCursor();
  const createdAt = new Date(ms);
  if (encodeCursor(createdAt, id) !== cursor) throw errors.invalidCursor();
  return { createdAt, id };
}

/** `/v1/admin/*`: keys, dead letters, retention and archives. Every route needs the `admin` scope. */
export function adminRoutes(deps: AdminRoutesDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  app.use('/v1/admin/*', requireScope(deps.keys, 'admin'));
  registerKeyRoutes(app, deps);
  registerSourceRoutes(app, { ...deps, secrets: deps.sourceSecrets });
  registerMaterializationRoutes(app, { ...deps, store: deps.retention.store });

  app.openapi(replayDeadLetters, async (c) => {
    const { limit } = c.req.valid('query');
    const replayed = await withBuffer(() => deps.deadLetters.replay(limit));
    requestLogger(c, deps.logger).info({ replayed }, 'dead letters replayed');
    return c.json({ replayed }, 200);
  });

  app.openapi(startRetention, async (c) => {
    try {
      const { runId } = await withDb(() => deps.retention.start('manual'));
      requestLogger(c, deps.logger).info({ runId }, 'retention pass requested');
      return c.json({ runId, status: 'running' as const }, 202);
    } catch (err) {
      if (err instanceof RetentionBusyError) {
        throw new ApiError('retention_running', 409, err.message, {
          details: [{ path: 'runId', message: err.runId }],
        });
      }
      throw err;
    }
  });

  app.openapi(listRetentionRuns, async (c) => {
    const { limit } = c.req.valid('query');
    return c.json({ runs: await withDb(() => listRuns(deps.pool, limit)) }, 200);
  });

  app.openapi(getRetentionRun, async (c) => {
    const id = c.req.valid('param').runId;
    const run = UUID.test(id) ? await withDb(() => getRun(deps.pool, id)) : undefined;
    if (!run) throw new ApiError('not_found', 404, 'no retention run with this id');
    return c.json(run, 200);
  });

  app.openapi(listArchivesRoute, async (c) => {
    const { month, service, status, limit, cursor } = c.req.valid('query');
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
    return c.json(
      {
        location: deps.retention.store.location,
        archives: rows,
        nextCursor: last ? encodeCursor(last.createdAt, last.id) : null,
      },
      200,
    );
  });

  return app;
}
