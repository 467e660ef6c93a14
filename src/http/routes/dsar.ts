import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { stream } from 'hono/streaming';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { ErasureService } from '../../compliance/erasure.ts';
import { type ExportOptions, exportSubject } from '../../compliance/export.ts';
import type { SubjectRegistry } from '../../compliance/subjects.ts';
import { EVENT_LIMITS } from '../../events/limits.ts';
import { ping } from '../../store/health.repo.ts';
import * as optOuts from '../../store/opt-outs.repo.ts';
import { linkedSubjects } from '../../store/subject-links.repo.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, withBuffer, withDb } from '../errors.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requireScope } from '../middleware/auth.ts';
import { requestLogger } from '../middleware/request-context.ts';
import { createRouter, errorResponses, invalidInput, json, needs, V1_ERRORS } from '../openapi.ts';

export interface DsarRoutesDeps {
  logger: Logger;
  pool: pg.Pool;
  keys: KeyResolver;
  subjects: SubjectRegistry;
  erasure: ErasureService;
  exports: ExportOptions;
}

// ---- Declarations -------------------------------------------------------------------------

/** The data subject in the path: what ingest accepts as `userId`. */
const Subject = z.object({
  userId: z
    .string()
    .min(1)
    .max(EVENT_LIMITS.maxUserIdLength)
    // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is the character refused
    .regex(/^[^\u0000]*$/)
    .openapi({ description: 'The data subject (an event `userId` or `anonymousId`), percent-encoded' }),
});
/** The same `400` for every subject refused, whatever the reason. */
const subjectRefused = invalidInput(
  'invalid_user_id',
  `userId must be 1–${EVENT_LIMITS.maxUserIdLength} characters`,
);
const SUBJECT_ERRORS = [400, ...V1_ERRORS] as const;
const unavailable = { 400: '`invalid_user_id`', 503: 'Also `database_unavailable`' } as const;

export const OptOut = z
  .strictObject({
    userId: z.string(),
    optedOut: z.boolean(),
    since: z.string().optional().openapi({ format: 'date-time', description: 'When opted out' }),
  })
  .openapi('OptOut');
export type OptOut = z.infer<typeof OptOut>;

export const ErasureRequested = z
  .strictObject({ requestId: z.guid(), status: z.literal('pending') })
  .openapi('ErasureRequested');

export const ErasureStatus = z
  .strictObject({
    requestId: z.guid(),
    userId: z.string(),
    status: z.enum(['pending', 'running', 'completed', 'failed']),
    requestedAt: z.string().openapi({ format: 'date-time' }),
    startedAt: z.string().nullable().openapi({ format: 'date-time' }),
    finishedAt: z.string().nullable().openapi({ format: 'date-time' }),
    deleted: z.strictObject({
      database: z.number(),
      buffer: z.number(),
      checkpoint: z.number(),
      archive: z.number(),
      deadLetter: z.number().openapi({
        description:
          "The subject's entries deleted from the dead-letter stream (received before the request)",
      }),
      materialized: z.number().openapi({
        description:
          "Rows deleted from the materialisations (§17): every table's rows of the subject's ids, its users row and identity links",
      }),
    }),
    archivesRewritten: z.number(),
    error: z.string().nullable(),
  })
  .openapi('ErasureStatus');
export type ErasureStatus = z.infer<typeof ErasureStatus>;

const route = <const M extends 'get' | 'put' | 'delete', const P extends string>(
  method: M,
  path: P,
  summary: string,
) => ({ method, path, summary, tags: ['compliance'], security: needs('dsar') });

export const optOut = createRoute({
  ...route('put', '/v1/users/{userId}/opt-out', 'Opt a subject out: their events are skipped at ingest'),
  operationId: 'optOut',
  description:
    'The subject is a `userId` or an `anonymousId`; an event carrying either is skipped. Ids linked to it now (an `alias` call, an event carrying both a `userId` and an `anonymousId`) are opted out with it, and back in with it.',
  middleware: [subjectRefused],
  request: { params: Subject },
  responses: {
    200: { description: 'Opted out', content: json(OptOut) },
    ...errorResponses(SUBJECT_ERRORS, unavailable),
  },
});

export const optIn = createRoute({
  ...route('delete', '/v1/users/{userId}/opt-out', 'Opt a subject back in'),
  operationId: 'optIn',
  middleware: [subjectRefused],
  request: { params: Subject },
  responses: {
    200: { description: 'Opted back in', content: json(OptOut) },
    ...errorResponses(SUBJECT_ERRORS, unavailable),
  },
});

export const requestErasure = createRoute({
  ...route(
    'delete',
    '/v1/users/{userId}/events',
    'Erase a subject: database, buffer, dead letters and archives',
  ),
  operationId: 'requestErasure',
  description:
    'Recorded and started in the background; follow it at /v1/dsar/{requestId}. The subject is a `userId` or an `anonymousId`, with every id linked to it (an `alias` call, an event carrying both): an event carrying any of them is erased. Erases the subject in every service, whatever services the key is bound to (as does the opt-out): a data subject’s rights do not depend on which key asks.',
  middleware: [subjectRefused],
  request: { params: Subject },
  responses: {
    202: { description: 'Requested', content: json(ErasureRequested) },
    ...errorResponses(SUBJECT_ERRORS, {
      ...unavailable,
      503: 'Also `database_unavailable` or `buffer_unavailable`',
    }),
  },
});

export const getErasure = createRoute({
  ...route('get', '/v1/dsar/{requestId}', 'Progress and outcome of an erasure'),
  operationId: 'getErasure',
  request: { params: z.object({ requestId: z.string().openapi({ description: 'A request id (a UUID)' }) }) },
  responses: {
    200: { description: 'Its state and what was deleted where', content: json(ErasureStatus) },
    ...errorResponses(V1_ERRORS, { 404: 'No request with this id', 503: unavailable[503] }),
  },
});

export const exportEvents = createRoute({
  ...route('get', '/v1/users/{userId}/events/export', 'Export every stored event of a subject'),
  operationId: 'exportEvents',
  description:
    'Streamed from the database, the dead-letter stream and the archives; a failure midway ends the stream early. ' +
    'Every event whose `userId` or `anonymousId` is the subject or an id linked to it (an `alias` call, an event carrying both), each once. ' +
    'Each line carries `source`: `database`, `dead_letter` (received but never stored: it could not be written, ' +
    'and waits in the dead-letter stream for an operator) or `archive`. A key bound to services exports only their events.',
  middleware: [subjectRefused],
  request: { params: Subject },
  responses: {
    200: {
      description: 'One event (StoredEvent, plus `source`) per line',
      content: { 'application/x-ndjson': { schema: { type: 'string' as const } } },
    },
    ...errorResponses(SUBJECT_ERRORS, unavailable),
  },
});

// ---- Handlers -----------------------------------------------------------------------------

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `/v1/users/:userId/*` and `/v1/dsar/*`: erasure, export and opt-out. Every route needs the `dsar` scope. */
export function dsarRoutes(deps: DsarRoutesDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  app.use('/v1/users/*', requireScope(deps.keys, 'dsar'));
  app.use('/v1/dsar/*', requireScope(deps.keys, 'dsar'));
  const keyId = (c: { get(k: 'principal'): { keyId: string } | undefined }) =>
    c.get('principal')?.keyId ?? null;

  app.openapi(optOut, async (c) => {
    const { userId } = c.req.valid('param');
    // The ids linked to the subject now (§12) are opted out with it.
    const { at: since, linked } = await withDb(async () =>
      optOuts.optOut(deps.pool, userId, keyId(c), await linkedSubjects(deps.pool, [userId])),
    );
    await deps.subjects
      .publish({
        op: 'opt_out',
        userId,
        at: since.getTime(),
        linked: linked.map((l) => ({ userId: l.userId, at: l.at.getTime() })),
      })
      .catch(() => {});
    requestLogger(c, deps.logger).info('subject opted out');
    return c.json({ userId, optedOut: true, since: since.toISOString() }, 200);
  });

  app.openapi(optIn, async (c) => {
    const { userId } = c.req.valid('param');
    const linked = await withDb(() => optOuts.optIn(deps.pool, userId));
    await deps.subjects.publish({ op: 'opt_in', userId, linked }).catch(() => {});
    return c.json({ userId, optedOut: false }, 200);
  });

  app.openapi(requestErasure, async (c) => {
    const { userId } = c.req.valid('param');
    // The request reads the buffer and writes the database: each failure maps to its own 503.
    const requestId = await withDb(() => withBuffer(() => deps.erasure.request(userId, keyId(c))));
    requestLogger(c, deps.logger).info({ requestId }, 'erasure requested');
    return c.json({ requestId, status: 'pending' as const }, 202);
  });

  app.openapi(getErasure, async (c) => {
    const id = c.req.valid('param').requestId;
    const status = UUID.test(id) ? await withDb(() => deps.erasure.status(id)) : undefined;
    if (!status) throw new ApiError('not_found', 404, 'no request with this id');
    return c.json(status, 200);
  });

  app.openapi(exportEvents, async (c) => {
    const { userId } = c.req.valid('param');
    // Fail before the 200 when the database is down; later failures end the stream early.
    await withDb(() => ping(deps.pool));
    deps.exports.metrics.dsarRequests.inc({ kind: 'export' });
    c.header('content-type', 'application/x-ndjson; charset=utf-8');
    c.header('cache-control', 'no-store');
    const log = requestLogger(c, deps.logger);
    // A stream, not a typed response: the library types `application/x-ndjson` (…json) as never.
    const response: Response = stream(
      c,
      async (s) => {
        let bytes = 0;
        const services = c.get('principal')?.services ?? null;
        for await (const text of exportSubject(deps.exports, userId, services)) {
          if (s.aborted) break;
          await s.write(text);
          bytes += text.length;
        }
        log.info({ chars: bytes }, 'subject export streamed');
      },
      async (err) => {
        log.error({ err }, 'subject export failed midway');
      },
    );
    return response as never;
  });

  return app;
}
