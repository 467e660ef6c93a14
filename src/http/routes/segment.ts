import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import {
  mapSegmentCall,
  SEGMENT_LIMITS,
  type SegmentBatchFields,
  type SegmentCallType,
} from '../../events/segment.ts';
import type { LiveHub } from '../../live/hub.ts';
import type { AppEnv } from '../env.ts';
import { ApiError } from '../errors.ts';
import { type IngestDeps, ingestPipeline, type Rejection, SEGMENT_FORMAT } from '../ingest.ts';
import type { KeyResolver, Principal } from '../key-resolver.ts';
import { liveRequest } from '../live-request.ts';
import { requireScope } from '../middleware/auth.ts';
import { spendEvents } from '../middleware/rate-limit.ts';
import { createRouter, errorResponses, handReadSchema, json, needs, V1_ERRORS } from '../openapi.ts';
import { readSegmentBody, SEGMENT_PATHS } from '../segment-body.ts';
import { BatchResult } from './events.ts';

export interface SegmentRoutesDeps extends IngestDeps {
  keys: KeyResolver;
  /** The live view, handed each request's outcomes while anyone listens. */
  live?: LiveHub | undefined;
}

// ---- Declarations -------------------------------------------------------------------------

const dateTime = z.string().meta({ description: 'ISO 8601 date-time' });
const object = z.looseObject({});

/** One call as Segment's and RudderStack's SDKs send it; every field not listed is kept too. */
const SegmentCall = z
  .looseObject({
    type: z.enum(['track', 'identify', 'page', 'screen', 'group', 'alias']).optional(),
    messageId: z.string().optional(),
    event: z.string().optional().meta({ description: 'The event name of a track call (required there)' }),
    userId: z.string().optional(),
    anonymousId: z.string().optional(),
    previousId: z.string().optional().meta({ description: 'An alias call’s previous id (required there)' }),
    groupId: z.string().optional(),
    name: z.string().optional(),
    category: z.string().optional(),
    timestamp: dateTime.optional(),
    originalTimestamp: dateTime.optional(),
    sentAt: dateTime.optional(),
    properties: object.optional(),
    traits: object.optional(),
    context: object.optional(),
    integrations: object.optional(),
    writeKey: z
      .string()
      .optional()
      .meta({ description: 'The write key, when no header carries one (never stored)' }),
  })
  .meta({
    description:
      'A Segment call. `messageId` becomes the event id (a UUIDv5 of service and messageId when it is not a UUID); `event` (track) or the call type becomes `type`; `anonymousId` is stored in a column of its own; every other field is kept in `metadata`, with `segmentType` naming the call type',
  });
const SEGMENT_CALL = handReadSchema(SegmentCall);
export const segmentCallRef = { $ref: '#/components/schemas/SegmentCall' };

/** A Segment batch body (`/v1/batch`), as JSON Schema. */
export const SEGMENT_BATCH = handReadSchema(
  z.looseObject({
    batch: z.array(SegmentCall).max(SEGMENT_LIMITS.maxBatchCalls),
    context: object.optional().meta({ description: 'Merged into each call’s own (the call’s keys win)' }),
    integrations: object
      .optional()
      .meta({ description: 'Merged into each call’s own (the call’s keys win)' }),
    sentAt: dateTime.optional().meta({ description: 'For calls without their own' }),
    writeKey: z.string().optional().meta({ description: 'The write key, when no header carries one' }),
  }),
);

export const SegmentResult = z
  .strictObject({ success: z.literal(true), ...BatchResult.shape })
  .openapi('SegmentResult');

const SEGMENT_ERRORS = [400, 413, 415, ...V1_ERRORS] as const;

const AUTH_TEXT =
  'The write key is an API key with `ingest` scope bound to a service (calls are stored under its first service): as `Authorization: Basic base64(KEY:)`, Bearer, `x-api-key`, or `writeKey` in the body.';

function declare(path: string, kind: SegmentCallType | 'batch') {
  const name = path.slice('/v1/'.length);
  const batch = kind === 'batch';
  return createRoute({
    method: 'post',
    path,
    operationId: `segment${name[0]?.toUpperCase()}${name.slice(1)}`,
    tags: ['segment'],
    summary: batch ? `Segment ${name}: up to ${SEGMENT_LIMITS.maxBatchCalls} calls` : `Segment ${name} call`,
    description: `Segment's Tracking API (ARCHITECTURE §12). ${AUTH_TEXT} JSON, also labelled \`text/plain\` (sendBeacon) or \`application/x-www-form-urlencoded\` (RudderStack's Node SDK), gzip or not, at most 500 KB; a call over 32 KB or invalid is refused on its own inside the \`200\`.`,
    security: [...needs('ingest'), { basic: ['ingest'] }],
    request: {
      body: {
        required: true,
        content: {
          'application/json': { schema: batch ? SEGMENT_BATCH : segmentCallRef },
          'text/plain': { schema: { type: 'string', description: 'The same JSON, as sendBeacon sends it' } },
          'application/x-www-form-urlencoded': {
            schema: {
              type: 'string',
              description:
                'The same JSON (not form fields): what RudderStack’s Node SDK labels its gzipped batches',
            },
          },
        },
      },
    },
    responses: {
      200: {
        description: 'Every call accepted, a duplicate, skipped (opted-out subject) or refused on its own',
        content: json(SegmentResult),
      },
      ...errorResponses(SEGMENT_ERRORS, {
        400: '`invalid_json`, `invalid_request` (not an object), `invalid_batch` (`batch` not an array)',
        403: 'Also `service_required`: the key is bound to no service',
        413: `Also \`batch_too_large\`: over ${SEGMENT_LIMITS.maxBatchCalls} calls, or more than the key may send in a minute`,
        429: '`rate_limited` (one per call) or `backpressure`',
        503: 'Also `buffer_unavailable`',
      }),
    },
  });
}

// ---- Handlers -----------------------------------------------------------------------------

/** The calls of a request, and what its batch says for all of them. */
export function callsOf(
  body: Record<string, unknown>,
  kind: SegmentCallType | 'batch',
): { calls: unknown[]; batch: SegmentBatchFields | undefined } {
  if (kind !== 'batch') return { calls: [body], batch: undefined };
  if (!Array.isArray(body.batch)) throw new ApiError('invalid_batch', 400, 'body must be {"batch": [...]}');
  if (body.batch.length > SEGMENT_LIMITS.maxBatchCalls) {
    throw new ApiError('batch_too_large', 413, `a batch holds at most ${SEGMENT_LIMITS.maxBatchCalls} calls`);
  }
  return {
    calls: body.batch,
    batch: { context: body.context, integrations: body.integrations, sentAt: body.sentAt },
  };
}

/** The service a write key's calls are stored under: its first (`403 service_required` when none). */
export function segmentService(principal: Principal): string {
  const service = principal.services?.[0];
  if (service === undefined) {
    throw new ApiError(
      'service_required',
      403,
      'a write key must be bound to a service: its calls are stored under its first one',
    );
  }
  return service;
}

/** The calls as native event inputs; a call that cannot be mapped is rejected on its own. */
export function segmentInputs(
  calls: unknown[],
  opts: {
    kind: SegmentCallType | 'batch';
    service: string;
    receivedAt: number;
    batch: SegmentBatchFields | undefined;
  },
): { inputs: { index: number; value: unknown }[]; rejected: Rejection[] } {
  const rejected: Rejection[] = [];
  const inputs: { index: number; value: unknown }[] = [];
  const routeType = opts.kind === 'batch' ? undefined : opts.kind;
  calls.forEach((call, index) => {
    const mapped = mapSegmentCall(call, {
      routeType,
      service: opts.service,
      receivedAt: opts.receivedAt,
      batch: opts.batch,
    });
    if (mapped.ok) inputs.push({ index, value: mapped.input });
    else
      rejected.push({
        index,
        code: mapped.code,
        message: mapped.message,
        ...(mapped.details ? { details: mapped.details } : {}),
      });
  });
  return { inputs, rejected };
}

/** `POST /v1/batch`, `/v1/import`, `/v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`. */
export function segmentRoutes(deps: SegmentRoutesDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  app.openAPIRegistry.registerComponent('schemas', 'SegmentCall', SEGMENT_CALL);
  const pipeline = ingestPipeline(deps);
  for (const [path, kind] of SEGMENT_PATHS) {
    app.openapi({ ...declare(path, kind), middleware: [requireScope(deps.keys, 'ingest')] }, async (c) => {
      const principal = c.get('principal');
      const live = liveRequest(c, deps.live);
      const service = segmentService(principal);
      const body = c.get('segmentBody') ?? (await readSegmentBody(c));
      const receivedAt = Date.now();
      const { calls, batch } = callsOf(body, kind);
      if (live) {
        live.count = calls.length;
        live.service = service;
        live.sent = (index) => calls[index];
      }
      // Every call of the request counts against the key's limit, valid or not.
      if (calls.length > 0) await spendEvents(c, calls.length);
      deps.metrics.eventsReceived.inc(calls.length);
      const { inputs, rejected } = segmentInputs(calls, { kind, service, receivedAt, batch });
      const outcome = await pipeline.many(
        principal,
        inputs,
        rejected,
        pipeline.validation(principal.keyId, receivedAt),
        SEGMENT_FORMAT,
        live,
      );
      return c.json({ success: true as const, ...outcome }, 200);
    });
  }
  return app;
}
