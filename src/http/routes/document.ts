import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { AppEnv } from '../env.ts';
import { ANY_ERRORS, errorResponses, json, openApiDocument } from '../openapi.ts';

export const OpenApiDocument = z
  .object({
    openapi: z.string().regex(/^3\.1\.\d+$/),
    info: z.object({ title: z.string(), version: z.string() }),
    paths: z.record(z.string(), z.unknown()),
  })
  .openapi('OpenApiDocument', { description: 'An OpenAPI 3.1 document' });

export const getDocument = createRoute({
  method: 'get',
  path: '/openapi.json',
  operationId: 'openApiDocument',
  tags: ['operations'],
  summary: 'This API description (OpenAPI 3.1)',
  description: 'Generated from the route declarations the server runs.',
  security: [],
  responses: {
    200: { description: 'The document', content: json(OpenApiDocument) },
    ...errorResponses([404, ...ANY_ERRORS]),
  },
});

/**
 * `GET /openapi.json`: the document of every operation `app` declares. Register it last;
 * the document is built on the first request, with every route (itself included) known.
 */
export function registerDocument(app: OpenAPIHono<AppEnv>): void {
  let document: ReturnType<typeof openApiDocument> | undefined;
  app.openapi(getDocument, (c) => {
    document ??= openApiDocument(app);
    return c.json(document as z.infer<typeof OpenApiDocument>, 200);
  });
}
