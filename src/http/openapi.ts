import { readFileSync } from 'node:fs';
import { OpenAPIHono, z } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import type { Scope } from '../store/api-keys.repo.ts';
import type { AppEnv } from './env.ts';
import { INVALID_INPUT, type InvalidInput } from './errors.ts';

// The pieces every route declaration shares: the error body, the error responses, the
// security requirement, the router with the one validation hook, and the document itself.

/** The contract's error body (ARCHITECTURE §3). */
export const ErrorBody = z
  .strictObject({
    error: z.strictObject({
      code: z.string().openapi({ description: 'Machine-readable reason', example: 'invalid_event' }),
      message: z.string(),
      details: z
        .array(
          z.strictObject({
            path: z.string().optional().openapi({ description: 'Dotted path of the offending field' }),
            code: z.string().optional(),
            message: z.string(),
            index: z.number().int().optional(),
          }),
        )
        .optional(),
      requestId: z.string().optional().openapi({ description: 'Also sent as the x-request-id header' }),
    }),
  })
  .openapi('Error');

const RETRY_AFTER = {
  'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer' as const } },
};

/** What each error status means, wherever it is answered; a route may say more. */
const ERROR_MEANINGS = {
  400: 'The request is invalid; `code` says how (`invalid_request`, `invalid_query`, `invalid_json`, `invalid_utf8`, `invalid_cursor`, …); a NUL (`%00`) in the path or query is always refused',
  401: 'No API key, or an unknown, revoked or expired one (`unauthorized`)',
  403: 'The key lacks the scope this operation needs (`forbidden`)',
  404: 'Nothing here (`not_found`); with ADMIN_PORT set, also every route the listener does not serve',
  408: 'The request did not arrive within the server timeouts (`request_timeout`); the connection is closed',
  409: 'The operation conflicts with one in progress',
  413: 'The body is over the limit, also after gzip decompression (`payload_too_large`)',
  415: 'Unsupported Content-Type or Content-Encoding (`unsupported_media_type`)',
  431: 'The request headers are too large (`headers_too_large`); the connection is closed',
  429: 'Over the key rate limit (`rate_limited`), the buffer is full (`backpressure`), or too many failed authentications from this address (`auth_throttled`); see Retry-After',
  500: 'Internal error (`internal`): not retriable as such; quote the requestId',
  503: 'A dependency is unavailable (`buffer_unavailable`, `database_unavailable`, `auth_unavailable`); retry after Retry-After',
} as const;

export type ErrorStatus = keyof typeof ERROR_MEANINGS;

interface ErrorResponse {
  description: string;
  headers?: typeof RETRY_AFTER;
  content: { 'application/json': { schema: typeof ErrorBody } };
}

/**
 * The error responses of an operation, each with the contract's error body; `say` adds
 * what a status means for this operation.
 */
export function errorResponses<S extends ErrorStatus>(
  statuses: readonly S[],
  say: Partial<Record<S, string>> = {},
): Record<S, ErrorResponse> {
  const out = {} as Record<S, ErrorResponse>;
  for (const status of statuses) {
    const extra = say[status];
    out[status] = {
      description: extra ? `${extra}. ${ERROR_MEANINGS[status]}` : ERROR_MEANINGS[status],
      ...(status === 429 || status === 503 ? { headers: RETRY_AFTER } : {}),
      content: { 'application/json': { schema: ErrorBody } },
    };
  }
  return out;
}

/**
 * What the server answers for any path before the app sees the request (`server.ts`), what
 * the app refuses on every path (a NUL in the path or query: `400`), and what `app.onError`
 * answers for anything unexpected.
 */
export const ANY_ERRORS = [400, 408, 431, 500] as const;

/** What every `/v1` operation can answer: authentication, scope, listener split, rate limit, failures. */
export const V1_ERRORS = [401, 403, 404, 429, 503, ...ANY_ERRORS] as const;

/** The security requirement of an operation needing `scope` (a role name, as OpenAPI 3.1 allows). */
export const needs = (scope: Scope): Record<string, string[]>[] => [{ apiKey: [scope] }, { bearer: [scope] }];

/** JSON content of a response or request body. */
export const json = <T extends z.ZodType>(schema: T) => ({ 'application/json': { schema } });

/**
 * A request body the handler reads itself (size limit, gzip, NDJSON: `body.ts`), so the
 * router must not validate it: documented from its zod schema as plain JSON Schema, which
 * `@hono/zod-openapi` passes through untouched. The handler parses with the same schema.
 */
export function handReadSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _, ...jsonSchema } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
  return jsonSchema;
}

/**
 * The route's own code and message for a `400` when zod refuses its input, named in the
 * route's declaration (`middleware`); `app.onError` reads it. Without one, the code
 * follows what was refused (`invalid_query` for a query, `invalid_request` otherwise).
 */
export function invalidInput(code: string, message: string): MiddlewareHandler<AppEnv> {
  const named: InvalidInput = { code, message };
  return async (c, next) => {
    c.set('invalidInput', named);
    await next();
  };
}

/** Every router's validation hook: a refusal goes on, as the ZodError, to `app.onError`. */
const refuseInvalid: NonNullable<ConstructorParameters<typeof OpenAPIHono<AppEnv>>[0]>['defaultHook'] = (
  result,
  c,
) => {
  if (result.success) return;
  if (!c.get('invalidInput')) {
    const byTarget = INVALID_INPUT[result.target as keyof typeof INVALID_INPUT] ?? INVALID_INPUT.json;
    c.set('invalidInput', byTarget);
  }
  throw result.error;
};

/** A router whose validation failures take the one error path (never the library's own 400 body). */
export function createRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({ defaultHook: refuseInvalid });
}

const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

const DESCRIPTION = `Event ingest: services POST JSON events; Tributary makes them durable in Redis Streams,
workers batch them into PostgreSQL, retention archives them, compliance erases and exports them.

Every response carries \`x-request-id\` (the client's when it sent a sane one). Every refusal
has the body \`{"error":{"code","message","details?","requestId?"}}\`.`;

/** Tags, in the order a reader meets them. */
const TAGS = [
  { name: 'events', description: 'Ingest and read events' },
  {
    name: 'segment',
    description:
      "Segment's Tracking API, so Segment's and RudderStack's SDKs send here unchanged (scope `ingest`)",
  },
  { name: 'compliance', description: 'Erasure, export and opt-out of a data subject (scope `dsar`)' },
  { name: 'admin', description: 'Keys, retention, archives, dead letters, audit log (scope `admin`)' },
  { name: 'operations', description: 'Health, metrics and this document; no key needed' },
  {
    name: 'console',
    description:
      'The web console: its page and files (no key needed to load them), and `whoami`, with which it signs in',
  },
];

/** Registers what the operations refer to: the two ways of presenting a key. */
export function registerSecuritySchemes(app: OpenAPIHono<AppEnv>): void {
  app.openAPIRegistry.registerComponent('securitySchemes', 'apiKey', {
    type: 'apiKey',
    in: 'header',
    name: 'x-api-key',
    description: 'An API key; the scopes an operation lists are the ones the key must carry',
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'The same API key as `Authorization: Bearer KEY`',
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'basic', {
    type: 'http',
    scheme: 'basic',
    description:
      'The same API key as the user name of `Authorization: Basic` (password empty or ignored): a Segment write key',
  });
}

/** The OpenAPI 3.1 document of every operation `app` declares. */
export function openApiDocument(app: OpenAPIHono<AppEnv>): ReturnType<OpenAPIHono['getOpenAPI31Document']> {
  return app.getOpenAPI31Document({
    openapi: '3.1.0',
    info: {
      title: 'Tributary',
      version: VERSION,
      description: DESCRIPTION,
      license: { name: 'Apache-2.0', url: 'https://www.apache.org/licenses/LICENSE-2.0' },
    },
    servers: [
      { url: '/', description: 'Wherever the API is served (PORT, and ADMIN_PORT for admin routes)' },
    ],
    tags: TAGS,
  });
}
