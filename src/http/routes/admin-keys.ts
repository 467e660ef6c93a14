import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { Logger } from 'pino';
import type { Config } from '../../config.ts';
import { eventShape } from '../../events/event.schema.ts';
import {
  type ApiKeyInfo,
  createApiKey,
  listApiKeys,
  revokeApiKey,
  rotateApiKey,
  SCOPES,
  updateApiKey,
} from '../../store/api-keys.repo.ts';
import type { Db } from '../../store/db.ts';
import { bodyKind, parseJson, readBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, withDb } from '../errors.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requestLogger } from '../middleware/request-context.ts';
import { errorResponses, handReadSchema, invalidInput, json, needs, V1_ERRORS } from '../openapi.ts';

export interface AdminKeysDeps {
  config: Pick<Config, 'KEY_ROTATION_OVERLAP_S'>;
  logger: Logger;
  db: Db;
  keys: KeyResolver;
}

// ---- Declarations -------------------------------------------------------------------------

const MAX_KEY_SERVICES = 100;
/** The services a key may write and read (§11); empty or absent: every service. */
const Services = z.array(eventShape.shape.service).max(MAX_KEY_SERVICES).openapi({
  description:
    'Services the key may write and read (each 1–64 of A-Z a-z 0-9 . _ -). Absent or empty: every service — keep that for operators’ keys.',
});
const KeyName = z.string().trim().min(1).max(128);
const RateLimit = z
  .number()
  .int()
  .min(1)
  .max(10_000_000)
  .openapi({ description: 'Events per minute (a batch of 100 spends 100); null: DEFAULT_KEY_RATE_LIMIT' });

export const NewKey = z.strictObject({
  name: KeyName,
  scopes: z.array(z.enum(SCOPES)).min(1),
  services: Services.optional(),
  rateLimitPerMinute: RateLimit.nullish(),
});
export type NewKey = z.input<typeof NewKey>;

export const Rotation = z.strictObject({
  overlapSeconds: z
    .number()
    .int()
    .min(0)
    .max(90 * 86_400)
    .optional(),
});
export type Rotation = z.input<typeof Rotation>;

export const KeyChange = z
  .strictObject({
    name: KeyName.optional(),
    services: Services.optional(),
    rateLimitPerMinute: RateLimit.nullish(),
  })
  .refine((v) => Object.keys(v).length > 0, { message: 'name, services or rateLimitPerMinute is required' });
export type KeyChange = z.input<typeof KeyChange>;

export const ApiKey = z
  .strictObject({
    id: z.guid(),
    name: z.string(),
    scopes: z.array(z.enum(SCOPES)),
    services: z.array(z.string()).openapi({ description: 'Empty: every service' }),
    rateLimitPerMinute: z.number().int().nullable(),
    keyPrefix: z.string().openapi({ description: 'The first characters of the key, to recognise it' }),
    createdAt: z.string().openapi({ format: 'date-time' }),
    revokedAt: z.string().nullable().openapi({ format: 'date-time' }),
    expiresAt: z.string().nullable().openapi({ format: 'date-time', description: 'Set on a rotated key' }),
  })
  .openapi('ApiKey');

const createdKeyShape = {
  id: z.guid(),
  key: z.string().openapi({ description: 'The key itself: shown once, never again' }),
  name: z.string(),
  scopes: z.array(z.enum(SCOPES)),
  services: z.array(z.string()).openapi({ description: 'Empty: every service' }),
  rateLimitPerMinute: z.number().int().nullable(),
};
export const CreatedKey = z.strictObject(createdKeyShape).openapi('CreatedKey');
export type CreatedKey = z.infer<typeof CreatedKey>;

export const RotatedKey = z
  .strictObject({
    ...createdKeyShape,
    rotatedFrom: z.strictObject({
      id: z.guid(),
      expiresAt: z
        .string()
        .nullable()
        .openapi({ format: 'date-time', description: 'When the old key stops' }),
    }),
  })
  .openapi('RotatedKey');
export type RotatedKey = z.infer<typeof RotatedKey>;

const KeyId = z.object({ id: z.string().openapi({ description: 'The key id (a UUID)' }) });
const BODY_ERRORS = [400, 413, 415, ...V1_ERRORS] as const;
const unavailable = { 503: 'Also `database_unavailable`' } as const;

export const createKey = createRoute({
  method: 'post',
  path: '/v1/admin/keys',
  operationId: 'createKey',
  tags: ['admin'],
  summary: 'Create an API key',
  security: needs('admin'),
  middleware: [invalidInput('invalid_request', 'invalid key request')],
  request: { body: { required: true, content: { 'application/json': { schema: handReadSchema(NewKey) } } } },
  responses: {
    201: { description: 'The new key, shown once', content: json(CreatedKey) },
    ...errorResponses(BODY_ERRORS, {
      400: '`invalid_request` with `details`, `invalid_json`',
      ...unavailable,
    }),
  },
});

export const rotateKey = createRoute({
  method: 'post',
  path: '/v1/admin/keys/{id}/rotate',
  operationId: 'rotateKey',
  tags: ['admin'],
  summary: 'Replace a key, the old one working for an overlap',
  description: 'Without a body (or `{}`) the overlap is KEY_ROTATION_OVERLAP_S.',
  security: needs('admin'),
  middleware: [invalidInput('invalid_request', 'invalid rotation request')],
  request: {
    params: KeyId,
    body: { required: false, content: { 'application/json': { schema: handReadSchema(Rotation) } } },
  },
  responses: {
    201: { description: 'The new key, shown once, and when the old one stops', content: json(RotatedKey) },
    ...errorResponses(BODY_ERRORS, { 404: 'No active key with this id', ...unavailable }),
  },
});

export const updateKey = createRoute({
  method: 'patch',
  path: '/v1/admin/keys/{id}',
  operationId: 'updateKey',
  tags: ['admin'],
  summary: 'Change a key’s services, rate limit or name',
  description:
    'The key itself stays the same, so no client changes anything; every API process applies the change at once. This is how keys made before services existed are bound to theirs.',
  security: needs('admin'),
  middleware: [invalidInput('invalid_request', 'invalid key change')],
  request: {
    params: KeyId,
    body: { required: true, content: { 'application/json': { schema: handReadSchema(KeyChange) } } },
  },
  responses: {
    200: { description: 'The key as it now is', content: json(ApiKey) },
    ...errorResponses(BODY_ERRORS, { 404: 'No active key with this id', ...unavailable }),
  },
});

export const listKeys = createRoute({
  method: 'get',
  path: '/v1/admin/keys',
  operationId: 'listKeys',
  tags: ['admin'],
  summary: 'List API keys (never the keys themselves)',
  security: needs('admin'),
  responses: {
    200: { description: 'Every key, newest first', content: json(z.strictObject({ keys: z.array(ApiKey) })) },
    ...errorResponses(V1_ERRORS, unavailable),
  },
});

export const revokeKey = createRoute({
  method: 'delete',
  path: '/v1/admin/keys/{id}',
  operationId: 'revokeKey',
  tags: ['admin'],
  summary: 'Revoke an API key',
  security: needs('admin'),
  request: { params: KeyId },
  responses: {
    204: { description: 'Revoked' },
    ...errorResponses(V1_ERRORS, { 404: 'No active key with this id', ...unavailable }),
  },
});

// ---- Handlers -----------------------------------------------------------------------------

/** A key as shown once to its owner, with its secret. */
const shownOnce = (key: string, info: ApiKeyInfo): CreatedKey => ({
  id: info.id,
  key,
  name: info.name,
  scopes: info.scopes,
  services: info.services,
  rateLimitPerMinute: info.rateLimitPerMinute,
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BODY_LIMIT = 64 * 1024;

/** `/v1/admin/keys*`: create, rotate, change, list, revoke. The `admin` scope is checked by `adminRoutes`. */
export function registerKeyRoutes(app: OpenAPIHono<AppEnv>, deps: AdminKeysDeps): void {
  app.openapi(createKey, async (c) => {
    bodyKind(c, ['json']);
    const input = NewKey.parse(parseJson(await readBody(c, BODY_LIMIT)));
    const { key, info } = await withDb(() => createApiKey(deps.db, input));
    // Every API process forgets the keys it found unknown: the new one works at once.
    await deps.keys.keyChanged(info.id);
    requestLogger(c, deps.logger).info({ keyId: info.id, scopes: info.scopes }, 'api key created');
    return c.json(shownOnce(key, info), 201);
  });

  app.openapi(rotateKey, async (c) => {
    const { id } = c.req.valid('param');
    // The body is optional: no body (or `{}`) takes the configured overlap.
    const raw = (await readBody(c, BODY_LIMIT)).trim();
    if (raw !== '') bodyKind(c, ['json']);
    const input = Rotation.parse(raw === '' ? {} : parseJson(raw));
    const overlap = input.overlapSeconds ?? deps.config.KEY_ROTATION_OVERLAP_S;
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

  app.openapi(updateKey, async (c) => {
    const { id } = c.req.valid('param');
    bodyKind(c, ['json']);
    const input = KeyChange.parse(parseJson(await readBody(c, BODY_LIMIT)));
    const info = UUID.test(id) ? await withDb(() => updateApiKey(deps.db, id, input)) : undefined;
    if (!info) throw new ApiError('not_found', 404, 'no active key with this id');
    // Every API process drops its cached answer for the key (within milliseconds).
    await deps.keys.keyChanged(id);
    requestLogger(c, deps.logger).info(
      { keyId: id, services: info.services, rateLimitPerMinute: info.rateLimitPerMinute },
      'api key changed',
    );
    return c.json(info, 200);
  });

  app.openapi(listKeys, async (c) => {
    return c.json({ keys: await withDb(() => listApiKeys(deps.db)) }, 200);
  });

  app.openapi(revokeKey, async (c) => {
    const { id } = c.req.valid('param');
    if (!UUID.test(id) || !(await withDb(() => revokeApiKey(deps.db, id)))) {
      throw new ApiError('not_found', 404, 'no active key with this id');
    }
    await deps.keys.keyChanged(id);
    requestLogger(c, deps.logger).info({ keyId: id }, 'api key revoked');
    return c.body(null, 204);
  });
}
