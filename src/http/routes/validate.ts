import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { Config } from '../../config.ts';
import { EVENT_LIMITS } from '../../events/limits.ts';
import { isSegmentCallType, SEGMENT_LIMITS, type SegmentCallType } from '../../events/segment.ts';
import { bodyKind, mediaType, parseJson, readBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, errors } from '../errors.ts';
import { type IngestDeps, ingestPipeline, type Rejection, SEGMENT_FORMAT } from '../ingest.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requireScope } from '../middleware/auth.ts';
import { createRouter, errorResponses, json, needs, V1_ERRORS } from '../openapi.ts';
import { readableType, VALIDATE_PATH } from '../segment-body.ts';
import { BATCH_BODY, BatchResult, batchFromJson, batchFromNdjson } from './events.ts';
import { callsOf, SEGMENT_BATCH, segmentCallRef, segmentInputs, segmentService } from './segment.ts';

export interface ValidateRoutesDeps extends IngestDeps {
  config: Pick<Config, 'MAX_BODY_BYTES' | 'RETENTION_DAYS' | 'RETENTION_BY_SERVICE'>;
  keys: KeyResolver;
}

// ---- Declarations -------------------------------------------------------------------------

const DryRunEvent = z
  .strictObject({
    id: z.guid(),
    service: z.string(),
    type: z.string(),
    timestamp: z
      .string()
      .openapi({ format: 'date-time', description: 'After Segment’s clock-skew correction' }),
    receivedAt: z.string().openapi({ format: 'date-time' }),
    keyId: z.string().optional(),
    userId: z.string().optional(),
    anonymousId: z.string().optional(),
    message: z.string().optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
    violations: z
      .array(z.strictObject({ path: z.string(), code: z.string(), message: z.string() }))
      .optional()
      .openapi({
        description: 'Its tracking-plan violations, stored with it under `warn` (ARCHITECTURE §14)',
      }),
  })
  .openapi('DryRunEvent', {
    description:
      'The event as it would be stored (a Segment call after its mapping), before metadata encryption. An id the request did not give (no `id`, no `messageId`) is made up for this answer only',
  });

const Detail = z.strictObject({ path: z.string(), code: z.string(), message: z.string() });

const DryRunResult = z
  .union([
    z.strictObject({
      index: z.number().int().min(0),
      status: z.enum(['accepted', 'duplicate']),
      id: z.guid(),
      event: DryRunEvent,
      warning: z
        .strictObject({ code: z.string(), message: z.string(), details: z.array(Detail).optional() })
        .optional()
        .openapi({
          description:
            'Stored although it fails its tracking plan (`warn`): `schema_violation` or `unknown_event_type`',
        }),
    }),
    z.strictObject({
      index: z.number().int().min(0),
      status: z.literal('skipped'),
      id: z.guid(),
      reason: z.literal('user_opt_out'),
      event: DryRunEvent,
    }),
    z.strictObject({
      index: z.number().int().min(0),
      status: z.literal('rejected'),
      code: z.string(),
      message: z.string(),
      details: z.array(Detail).optional(),
    }),
  ])
  .openapi('DryRunResult');

export const ValidateResult = z
  .strictObject({
    success: z
      .literal(true)
      .optional()
      .openapi({ description: 'Present for a Segment body, as the Segment routes answer' }),
    ...BatchResult.shape,
    dryRun: z.literal(true),
    results: z.array(DryRunResult).openapi({ description: 'One per event, in request order' }),
  })
  .openapi('ValidateResult');

export const validateEvents = createRoute({
  method: 'post',
  path: VALIDATE_PATH,
  operationId: 'validateEvents',
  tags: ['events'],
  summary: 'Dry run of ingest: what each event would get, storing nothing',
  description: `A native batch (\`{"events":[…]}\` or NDJSON, as \`POST /v1/events/batch\`), a Segment batch (\`{"batch":[…]}\`, as \`POST /v1/batch\`) or one Segment call with its \`type\` (as \`POST /v1/<type>\`). Answers what that route would answer (the same checks, limits and codes; \`duplicate\` for an id in the dedupe window or repeated in the request), plus \`dryRun\` and one result per event holding the event as it would be stored. Nothing is buffered or stored, and no id is remembered. Counts as one request against the key's rate limit (not one per event), and is not refused for backpressure. Accepts \`Content-Encoding: gzip\`.`,
  security: [...needs('ingest'), { basic: ['ingest'] }],
  request: {
    body: {
      required: true,
      content: {
        'application/json': { schema: { anyOf: [BATCH_BODY, SEGMENT_BATCH, segmentCallRef] } },
        'application/x-ndjson': {
          schema: { type: 'string', description: 'One event (EventInput) per line, as for a batch' },
        },
        'text/plain': {
          schema: { type: 'string', description: 'A Segment body as sendBeacon sends it' },
        },
      },
    },
  },
  responses: {
    200: {
      description: 'What ingest would answer, with each event’s result; nothing was stored',
      content: json(ValidateResult),
    },
    ...errorResponses([400, 413, 415, ...V1_ERRORS], {
      400: '`invalid_batch`, `invalid_json`, `invalid_request`, `incomplete_body`, as the ingest route would answer',
      403: 'Also `service_required` for a Segment body: the key is bound to no service',
      413: `Also \`batch_too_large\`: over ${EVENT_LIMITS.maxBatchEvents} events, or ${SEGMENT_LIMITS.maxBatchCalls} Segment calls`,
      503: 'Also `buffer_unavailable`: the dedupe window cannot be read',
    }),
  },
});

// ---- Handler ------------------------------------------------------------------------------

/** What a body is: a native batch, or a Segment batch or call (named by its `type`). */
type BodyFormat = 'native' | SegmentCallType | 'batch';

/** The format of a parsed JSON body: `events` is native, `batch` a Segment batch, a call type one call. */
function formatOf(body: unknown): BodyFormat | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  if ('events' in body) return 'native';
  if ('batch' in body) return 'batch';
  const type = (body as { type?: unknown }).type;
  return isSegmentCallType(type) ? type : undefined;
}

/** The size limit of the route that takes the body: `413` past it, as that route answers. */
function checkSize(text: string, maxBytes: number): void {
  if (text.length > maxBytes / 3 && Buffer.byteLength(text) > maxBytes)
    throw errors.payloadTooLarge(maxBytes);
}

/**
 * JSON (either format), NDJSON (native), or a Segment body under the other types its routes
 * take (`text/plain`, …); `415` for anything else, as ingest answers.
 */
function mediaKind(c: Context<AppEnv>): 'json' | 'ndjson' | 'segment' {
  if (!readableType(c)) return bodyKind(c, ['json', 'ndjson']);
  const type = mediaType(c);
  return type === 'application/json' || type.endsWith('+json') ? 'json' : 'segment';
}

/** `POST /v1/events/validate`. */
export function validateRoutes(deps: ValidateRoutesDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  const { config } = deps;
  const pipeline = ingestPipeline(deps);
  // The larger of the two routes' limits while reading; each body is then held to its own route's.
  const maxBytes = Math.max(config.MAX_BODY_BYTES, SEGMENT_LIMITS.maxRequestBytes);

  app.openapi({ ...validateEvents, middleware: [requireScope(deps.keys, 'ingest')] }, async (c) => {
    const principal = c.get('principal');
    const kind = mediaKind(c);
    const text = await readBody(c, kind === 'ndjson' ? config.MAX_BODY_BYTES : maxBytes);
    if (kind === 'ndjson') {
      const rejected: Rejection[] = [];
      const inputs = batchFromNdjson(text, rejected);
      const ctx = pipeline.validation(principal.keyId);
      return c.json(await pipeline.dryRun(principal, inputs, rejected, ctx), 200);
    }
    const body = parseJson(text);
    const format = formatOf(body);
    if (format === 'native') {
      if (kind !== 'json')
        throw errors.unsupportedMediaType('Content-Type must be application/json or application/x-ndjson');
      checkSize(text, config.MAX_BODY_BYTES);
      const inputs = batchFromJson(body);
      return c.json(await pipeline.dryRun(principal, inputs, [], pipeline.validation(principal.keyId)), 200);
    }
    if (format === undefined) {
      throw new ApiError(
        'invalid_batch',
        400,
        'body must be {"events": [...]}, NDJSON, a Segment batch {"batch": [...]} or one Segment call with its "type"',
      );
    }
    checkSize(text, SEGMENT_LIMITS.maxRequestBytes);
    const service = segmentService(principal);
    const receivedAt = Date.now();
    const { calls, batch } = callsOf(body as Record<string, unknown>, format);
    const { inputs, rejected } = segmentInputs(calls, { kind: format, service, receivedAt, batch });
    const ctx = pipeline.validation(principal.keyId, receivedAt);
    const outcome = await pipeline.dryRun(principal, inputs, rejected, ctx, SEGMENT_FORMAT);
    return c.json({ success: true as const, ...outcome }, 200);
  });
  return app;
}
