import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type pg from 'pg';
import type { Logger } from 'pino';
import { eventShape } from '../../events/event.schema.ts';
import {
  compilePlanSchema,
  DEFAULT_PLAN_SETTINGS,
  PLAN_MODES,
  type PlanSettings,
  UNKNOWN_TYPE_RULES,
} from '../../events/plans.ts';
import type { Scope } from '../../store/api-keys.repo.ts';
import {
  currentSchemas,
  deleteSchema,
  getSchema,
  listPlanSettings,
  type PlanSettingsRow,
  putPlanSettings,
  putSchema,
  type SchemaVersion,
  schemaVersions,
} from '../../store/plans.repo.ts';
import { bodyKind, parseJson, readBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, withDb } from '../errors.ts';
import { type KeyResolver, mayUseService, type Principal } from '../key-resolver.ts';
import { requireAnyScope, requireScope } from '../middleware/auth.ts';
import { requestLogger } from '../middleware/request-context.ts';
import {
  createRouter,
  errorResponses,
  handReadSchema,
  invalidInput,
  json,
  needs,
  V1_ERRORS,
} from '../openapi.ts';
import type { PlanRegistry } from '../plan-registry.ts';

export interface SchemaRoutesDeps {
  pool: pg.Pool;
  logger: Logger;
  keys: KeyResolver;
  plans: Pick<PlanRegistry, 'changed'>;
}

// ---- Declarations -------------------------------------------------------------------------

/** A schema's JSON text at most (a plan with hundreds of properties fits many times over). */
const MAX_SCHEMA_BYTES = 256 * 1024;

const ServiceParam = z.object({ service: z.string().openapi({ description: 'The service' }) });
const TypeParams = z.object({
  service: z.string().openapi({ description: 'The service' }),
  type: z.string().openapi({ description: 'The event type (a track call’s event name, URL-encoded)' }),
});

export const SchemaBody = z.strictObject({
  schema: z.record(z.string(), z.unknown()).openapi({
    description:
      'A JSON Schema (2020-12) for the event’s `metadata` (native events), or a Segment call’s `properties` (track, page, screen) or `traits` (identify, group). Formats of ajv-formats; no remote `$ref`.',
  }),
});

export const SettingsBody = z
  .strictObject({
    mode: z.enum(PLAN_MODES).optional().openapi({
      description: 'Registered types: `off` (not checked), `warn` (stored, with violations), `reject`',
    }),
    unknownTypes: z.enum(UNKNOWN_TYPE_RULES).optional().openapi({
      description:
        'Types with no schema: `allow`, `warn` (stored, flagged) or `reject` (`unknown_event_type`)',
    }),
  })
  .refine((v) => v.mode !== undefined || v.unknownTypes !== undefined, {
    message: 'mode or unknownTypes is required',
  });
export type SettingsBody = z.input<typeof SettingsBody>;

const Written = z
  .strictObject({
    service: z.string(),
    type: z.string(),
    version: z.number().int().min(1),
    changed: z.boolean().openapi({ description: 'false: the same schema was the current version already' }),
  })
  .openapi('SchemaWritten');

const TypeVersion = z.strictObject({
  type: z.string(),
  version: z.number().int().min(1),
  createdAt: z.string().openapi({ format: 'date-time' }),
});

export const ServicePlan = z
  .strictObject({
    service: z.string(),
    mode: z.enum(PLAN_MODES),
    unknownTypes: z.enum(UNKNOWN_TYPE_RULES),
    types: z.array(TypeVersion).openapi({ description: 'Registered types and their current versions' }),
  })
  .openapi('ServicePlan');
export type ServicePlan = z.infer<typeof ServicePlan>;

const Settings = z
  .strictObject({ service: z.string(), mode: z.enum(PLAN_MODES), unknownTypes: z.enum(UNKNOWN_TYPE_RULES) })
  .openapi('PlanSettings');

export const StoredSchema = z
  .strictObject({
    service: z.string(),
    type: z.string(),
    version: z.number().int().min(1),
    createdAt: z.string().openapi({ format: 'date-time' }),
    deletedAt: z
      .string()
      .nullable()
      .openapi({ format: 'date-time', description: 'Set on a deleted version' }),
    schema: z.record(z.string(), z.unknown()),
    versions: z
      .array(
        z.strictObject({
          version: z.number().int().min(1),
          createdAt: z.string().openapi({ format: 'date-time' }),
          deletedAt: z.string().nullable().openapi({ format: 'date-time' }),
        }),
      )
      .openapi({ description: 'Every version of the type, newest first' }),
  })
  .openapi('EventSchema');

const READ_SCOPES: readonly Scope[] = ['read', 'admin'];
const readSecurity = [...needs('read'), ...needs('admin')];
const BODY_ERRORS = [400, 413, 415, ...V1_ERRORS] as const;
const unavailable = { 503: 'Also `database_unavailable`' } as const;
const notAllowed = { 403: 'Also `service_not_allowed`: the key is bound to other services' } as const;

export const putEventSchema = createRoute({
  method: 'put',
  path: '/v1/schemas/{service}/{type}',
  operationId: 'putEventSchema',
  tags: ['tracking plans'],
  summary: 'Register a schema for an event type (a new version)',
  description:
    'The schema is compiled before it is stored: one Ajv refuses (unknown keyword or format, invalid schema, unresolved `$ref`) is answered `400 invalid_schema` with Ajv’s error, and nothing changes. The same schema as the current version changes nothing (`changed: false`). Every API process checks events against it within a second.',
  security: needs('admin'),
  middleware: [invalidInput('invalid_schema', 'invalid schema request')],
  request: {
    params: TypeParams,
    body: { required: true, content: { 'application/json': { schema: handReadSchema(SchemaBody) } } },
  },
  responses: {
    200: { description: 'The current version', content: json(Written) },
    ...errorResponses(BODY_ERRORS, {
      400: '`invalid_schema` with `details`, `invalid_json`, `invalid_service` / `invalid_type`',
      ...notAllowed,
      ...unavailable,
    }),
  },
});

export const deleteEventSchema = createRoute({
  method: 'delete',
  path: '/v1/schemas/{service}/{type}',
  operationId: 'deleteEventSchema',
  tags: ['tracking plans'],
  summary: 'Remove a type’s schema (its events become an unknown type)',
  security: needs('admin'),
  request: { params: TypeParams },
  responses: {
    200: {
      description: 'The version removed',
      content: json(z.strictObject({ service: z.string(), type: z.string(), version: z.number().int() })),
    },
    ...errorResponses(V1_ERRORS, { 404: '`schema_not_found`', ...notAllowed, ...unavailable }),
  },
});

export const getEventSchema = createRoute({
  method: 'get',
  path: '/v1/schemas/{service}/{type}',
  operationId: 'getEventSchema',
  tags: ['tracking plans'],
  summary: 'A type’s schema: the current version, or `?version=N`',
  security: readSecurity,
  request: {
    params: TypeParams,
    query: z.object({ version: z.coerce.number().int().min(1).optional() }),
  },
  responses: {
    200: { description: 'The schema and the list of versions', content: json(StoredSchema) },
    ...errorResponses([400, ...V1_ERRORS], { 404: '`schema_not_found`', ...notAllowed, ...unavailable }),
  },
});

export const putPlanSettingsRoute = createRoute({
  method: 'put',
  path: '/v1/schemas/{service}',
  operationId: 'putPlanSettings',
  tags: ['tracking plans'],
  summary: 'Set a service’s mode and what happens to unregistered types',
  description: `A service with no settings gets \`mode: "${DEFAULT_PLAN_SETTINGS.mode}"\`, \`unknownTypes: "${DEFAULT_PLAN_SETTINGS.unknownTypes}"\`. A field left out keeps its value.`,
  security: needs('admin'),
  middleware: [invalidInput('invalid_request', 'invalid plan settings')],
  request: {
    params: ServiceParam,
    body: { required: true, content: { 'application/json': { schema: handReadSchema(SettingsBody) } } },
  },
  responses: {
    200: { description: 'The settings as they now are', content: json(Settings) },
    ...errorResponses(BODY_ERRORS, {
      400: '`invalid_request` with `details`, `invalid_service`',
      ...unavailable,
    }),
  },
});

export const getServicePlan = createRoute({
  method: 'get',
  path: '/v1/schemas/{service}',
  operationId: 'getServicePlan',
  tags: ['tracking plans'],
  summary: 'A service’s settings and registered types',
  security: readSecurity,
  request: { params: ServiceParam },
  responses: {
    200: {
      description: 'The plan (the defaults and no types for a service without one)',
      content: json(ServicePlan),
    },
    ...errorResponses([400, ...V1_ERRORS], { ...notAllowed, ...unavailable }),
  },
});

export const listPlans = createRoute({
  method: 'get',
  path: '/v1/schemas',
  operationId: 'listPlans',
  tags: ['tracking plans'],
  summary: 'Every service with a plan (settings or schemas), with its types and versions',
  description: 'A key bound to services sees theirs.',
  security: readSecurity,
  responses: {
    200: { description: 'By service', content: json(z.strictObject({ services: z.array(ServicePlan) })) },
    ...errorResponses(V1_ERRORS, unavailable),
  },
});

// ---- Handlers -----------------------------------------------------------------------------

function checkedService(service: string): string {
  if (!eventShape.shape.service.safeParse(service).success) {
    throw new ApiError('invalid_service', 400, 'service must be 1–64 of A-Z a-z 0-9 . _ -');
  }
  return service;
}

function checkedType(type: string): string {
  if (!eventShape.shape.type.safeParse(type).success) {
    throw new ApiError('invalid_type', 400, 'type must be 1–128 characters of valid Unicode with no NUL');
  }
  return type;
}

/** Refuses a key bound to other services (§11): it neither reads nor writes `service`'s plan. */
function mayUse(principal: Principal, service: string): void {
  if (!mayUseService(principal, service)) {
    throw new ApiError('service_not_allowed', 403, `this key may not use service "${service}"`);
  }
}

/** Settings and current versions joined into one plan per service, by service. */
function plansOf(settings: PlanSettingsRow[], versions: SchemaVersion[]): ServicePlan[] {
  const plans = new Map<string, ServicePlan>();
  const planOf = (service: string) => {
    let plan = plans.get(service);
    if (!plan) {
      plan = { service, ...DEFAULT_PLAN_SETTINGS, types: [] };
      plans.set(service, plan);
    }
    return plan;
  };
  for (const s of settings) Object.assign(planOf(s.service), settingsOf(s));
  for (const v of versions)
    planOf(v.service).types.push({ type: v.type, version: v.version, createdAt: v.createdAt });
  return [...plans.values()].sort((a, b) => (a.service < b.service ? -1 : 1));
}

const settingsOf = (row: PlanSettingsRow): PlanSettings => ({
  mode: row.mode as PlanSettings['mode'],
  unknownTypes: row.unknownTypes as PlanSettings['unknownTypes'],
});

/** `/v1/schemas*` (ARCHITECTURE §14): tracking plans, written with `admin`, read with `read` or `admin`. */
export function schemaRoutes(deps: SchemaRoutesDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  const { pool } = deps;
  const admin = requireScope(deps.keys, 'admin');
  const reader = requireAnyScope(deps.keys, READ_SCOPES);

  app.openapi({ ...putEventSchema, middleware: [...putEventSchema.middleware, admin] }, async (c) => {
    const params = c.req.valid('param');
    const service = checkedService(params.service);
    const type = checkedType(params.type);
    mayUse(c.get('principal'), service);
    bodyKind(c, ['json']);
    const text = await readBody(c, MAX_SCHEMA_BYTES);
    const { schema } = SchemaBody.parse(parseJson(text));
    // PostgreSQL's jsonb cannot hold a NUL character.
    if (text.includes('\\u0000')) {
      throw new ApiError('invalid_schema', 400, 'a schema may not contain NUL characters');
    }
    const compiled = compilePlanSchema(schema);
    if (!compiled.ok) {
      throw new ApiError('invalid_schema', 400, compiled.message, { details: compiled.details });
    }
    const principal = c.get('principal');
    const written = await withDb(() =>
      putSchema(pool, { service, type, schema, keyId: principal.keyId ?? null }),
    );
    if (written.changed) {
      await deps.plans.changed(service);
      requestLogger(c, deps.logger).info(
        { service, type, version: written.version },
        'event schema registered',
      );
    }
    return c.json({ service, type, ...written }, 200);
  });

  app.openapi({ ...deleteEventSchema, middleware: [admin] }, async (c) => {
    const { service, type } = c.req.valid('param');
    mayUse(c.get('principal'), service);
    const version = await withDb(() => deleteSchema(pool, service, type));
    if (version === undefined)
      throw new ApiError('schema_not_found', 404, `no schema for "${type}" in "${service}"`);
    await deps.plans.changed(service);
    requestLogger(c, deps.logger).info({ service, type, version }, 'event schema removed');
    return c.json({ service, type, version }, 200);
  });

  app.openapi({ ...getEventSchema, middleware: [reader] }, async (c) => {
    const { service, type } = c.req.valid('param');
    const { version } = c.req.valid('query');
    mayUse(c.get('principal'), service);
    const [found, versions] = await withDb(() =>
      Promise.all([getSchema(pool, service, type, version), schemaVersions(pool, service, type)]),
    );
    if (!found) {
      const which = version === undefined ? '' : ` version ${version}`;
      throw new ApiError('schema_not_found', 404, `no schema${which} for "${type}" in "${service}"`);
    }
    return c.json({ ...found, versions }, 200);
  });

  app.openapi(
    { ...putPlanSettingsRoute, middleware: [...putPlanSettingsRoute.middleware, admin] },
    async (c) => {
      const service = checkedService(c.req.valid('param').service);
      bodyKind(c, ['json']);
      const change = SettingsBody.parse(parseJson(await readBody(c, 4096)));
      const row = await withDb(() => putPlanSettings(pool, service, change, DEFAULT_PLAN_SETTINGS));
      await deps.plans.changed(service);
      requestLogger(c, deps.logger).info({ service, ...settingsOf(row) }, 'tracking plan settings changed');
      return c.json({ service, ...settingsOf(row) }, 200);
    },
  );

  app.openapi({ ...getServicePlan, middleware: [reader] }, async (c) => {
    const service = checkedService(c.req.valid('param').service);
    mayUse(c.get('principal'), service);
    const [settings, versions] = await withDb(() =>
      Promise.all([listPlanSettings(pool, [service]), currentSchemas(pool, [service])]),
    );
    const plan = plansOf(settings, versions)[0] ?? { service, ...DEFAULT_PLAN_SETTINGS, types: [] };
    return c.json(plan, 200);
  });

  app.openapi({ ...listPlans, middleware: [reader] }, async (c) => {
    const services = c.get('principal').services ?? undefined;
    const [settings, versions] = await withDb(() =>
      Promise.all([listPlanSettings(pool, services), currentSchemas(pool, services)]),
    );
    return c.json({ services: plansOf(settings, versions) }, 200);
  });
  return app;
}
