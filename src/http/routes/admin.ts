import { Hono } from 'hono';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { DeadLetterStream } from '../../buffer/dead-letter.ts';
import { createApiKey, listApiKeys, revokeApiKey, SCOPES } from '../../store/api-keys.repo.ts';
import type { Db } from '../../store/db.ts';
import { classifyDbError } from '../../store/errors.ts';
import { bodyKind, parseJson, readBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, errors } from '../errors.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requireScope } from '../middleware/auth.ts';
import { requestLogger } from '../middleware/request-context.ts';
export interface AdminRoutesDeps {
  logger: Logger;
  db: Db;
  keys: KeyResolver;
  deadLetters: DeadLetterStream;
}

const newKey = z.strictObject({
  name: z.string().trim().min(1).max(128),
  scopes: z.array(z.enum(SCOPES)).min(1),
  rateLimitPerMinute: z.number().int().min(1).max(10_000_000).nullish(),
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function withDb<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (classifyDbError(err) === 'unavailable') throw errors.databaseUnavailable();
    throw err;
  }
}

/** `/v1/admin/*`: keys and dead letters. Every route needs the `admin` scope. */
export function adminRoutes(deps: AdminRoutesDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use('/v1/admin/*', requireScope(deps.keys, 'admin'));

  app.post('/v1/admin/keys', async (c) => {
    bodyKind(c, ['json']);
    const parsed = newKey.safeParse(parseJson(await readBody(c, 64 * 1024)));
    if (!parsed.success) {
      throw new ApiError('invalid_request', 400, 'invalid key request', {
        details: parsed.error.issues.map((i) => ({
          path: i.path.join('.'),
          code: i.code,
          message: i.message,
        })),
      });
    }
    const { key, info } = await withDb(() => createApiKey(deps.db, parsed.data));
    requestLogger(c, deps.logger).info({ keyId: info.id, scopes: info.scopes }, 'api key created');
    return c.json(
      { id: info.id, key, name: info.name, scopes: info.scopes, rateLimitPerMinute: info.rateLimitPerMinute },
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
    deps.keys.clear();
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

  return app;
}
