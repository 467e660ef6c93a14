import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { SCOPES } from '../../store/api-keys.repo.ts';
import type { AppEnv } from '../env.ts';
import { createRouter, errorResponses, json, V1_ERRORS } from '../openapi.ts';

// ---- Declarations -------------------------------------------------------------------------

export const Whoami = z
  .strictObject({
    keyId: z.string().openapi({ description: 'The key id (`admin-bootstrap` for ADMIN_API_KEY)' }),
    name: z.string(),
    scopes: z.array(z.enum(SCOPES)),
    services: z
      .array(z.string())
      .openapi({ description: 'Services the key may write and read; empty: every service' }),
  })
  .openapi('Whoami');
export type Whoami = z.infer<typeof Whoami>;

export const whoami = createRoute({
  method: 'get',
  path: '/v1/whoami',
  operationId: 'whoami',
  tags: ['console'],
  summary: 'The key this request carries: its name, scopes and services',
  description:
    'Any valid key, whatever its scopes; the web console signs in with it. With ADMIN_PORT set, served on both ports.',
  // Any key: no scope is required.
  security: [{ apiKey: [] }, { bearer: [] }],
  responses: {
    200: { description: 'The key', content: json(Whoami) },
    ...errorResponses(V1_ERRORS),
  },
});

// ---- Handlers -----------------------------------------------------------------------------

/** `GET /v1/whoami`: what `authenticate` (mounted on `/v1/*`) found for the request's key. */
export function whoamiRoutes(): OpenAPIHono<AppEnv> {
  const app = createRouter();
  app.openapi(whoami, (c) => {
    const principal = c.get('principal');
    return c.json(
      {
        keyId: principal.keyId,
        name: principal.name ?? '',
        scopes: [...principal.scopes],
        services: [...(principal.services ?? [])],
      },
      200,
    );
  });
  return app;
}
