import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { Config } from '../../config.ts';
import { eventShape } from '../../events/event.schema.ts';
import { parseJsonExact } from '../../events/json-numbers.ts';
import { EVENT_LIMITS } from '../../events/limits.ts';
import type { LiveHub } from '../../live/hub.ts';
import type { LiveRequest } from '../../live/outcomes.ts';
import type { ReadRouter } from '../../store/read-replica.ts';
import { type BodySource, bodyKindOf, parseJson, readBodyOf } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { ApiError } from '../errors.ts';
import {
  type BatchOutcome,
  type IngestDeps,
  ingestPipeline,
  type Rejection,
  type SingleOutcome,
} from '../ingest.ts';
import type { KeyResolver, Principal } from '../key-resolver.ts';
import { liveRequest } from '../live-request.ts';
import { requireScope } from '../middleware/auth.ts';
import { spendEvents } from '../middleware/rate-limit.ts';
import { createRouter, errorResponses, handReadSchema, json, needs, V1_ERRORS } from '../openapi.ts';
import { registerEventQuery } from './events-query.ts';

export interface EventRoutesDeps extends IngestDeps {
  config: Pick<Config, 'MAX_BODY_BYTES' | 'RETENTION_DAYS' | 'RETENTION_BY_SERVICE'>;
  /** Where `GET /v1/events` reads: the replica while it keeps up, else the primary. */
  reads: Pick<ReadRouter, 'read'>;
  keys: KeyResolver;
  /** The live view, handed each request's outcomes while anyone listens. */
  live?: LiveHub | undefined;
}

// ---- Declarations -------------------------------------------------------------------------

/** One event as a client sends it (ARCHITECTURE §3 "Event"); parsed by `parseEvent`. */
const EVENT_INPUT = handReadSchema(
  eventShape.extend({ metadata: z.record(z.string(), z.unknown()).nullish() }),
);
const eventInputRef = { $ref: '#/components/schemas/EventInput' };

const Id = z.guid().openapi({ description: 'The event id (the idempotency key)' });

const RejectionSchema = z.strictObject({
  index: z.number().int().min(0),
  code: z.string(),
  message: z.string(),
  details: z.array(z.strictObject({ path: z.string(), code: z.string(), message: z.string() })).optional(),
});

const Warnings = z.array(RejectionSchema).optional().openapi({
  description:
    'Events stored although they fail their service’s tracking plan (mode `warn`, ARCHITECTURE §14): `schema_violation` with the failing paths, or `unknown_event_type`. Absent when there are none',
});

export const IngestResult = z
  .union([
    z.strictObject({ id: Id, status: z.enum(['accepted', 'duplicate']), warnings: Warnings }),
    z.strictObject({ id: Id, status: z.literal('skipped'), reason: z.literal('user_opt_out') }),
  ])
  .openapi('IngestResult');
export type IngestResult = z.infer<typeof IngestResult>;

export const BatchResult = z
  .strictObject({
    accepted: z.number().int().min(0),
    duplicates: z.number().int().min(0),
    skipped: z.number().int().min(0),
    ids: z.array(Id).openapi({ description: 'In request order: every event now stored or buffered' }),
    rejected: z.array(RejectionSchema),
    warnings: Warnings,
  })
  .openapi('BatchResult');
export type BatchResult = z.infer<typeof BatchResult>;

const INGEST_ERRORS = [400, 413, 415, ...V1_ERRORS] as const;

/** The JSON body of a batch: `{"events":[…]}`. */
export const BATCH_BODY = {
  type: 'object' as const,
  properties: {
    events: {
      type: 'array' as const,
      items: eventInputRef,
      minItems: 1,
      maxItems: EVENT_LIMITS.maxBatchEvents,
    },
  },
  required: ['events'],
  additionalProperties: false,
};

export const ingestOne = createRoute({
  method: 'post',
  path: '/v1/events',
  operationId: 'ingestEvent',
  tags: ['events'],
  summary: 'Ingest one event',
  description: 'A `202` means the event is in the buffer. Accepts `Content-Encoding: gzip`.',
  security: needs('ingest'),
  request: { body: { required: true, content: { 'application/json': { schema: eventInputRef } } } },
  responses: {
    202: {
      description: 'Accepted, a duplicate of an id seen recently, or skipped (opted-out subject)',
      content: json(IngestResult),
    },
    ...errorResponses(INGEST_ERRORS, {
      400: '`invalid_event` with `details`, `invalid_json`, `incomplete_body`; `schema_violation` (with the failing paths in `details`) or `unknown_event_type` when the service’s tracking plan rejects the event (ARCHITECTURE §14)',
      403: 'Also `service_not_allowed`: the key is bound to other services (ARCHITECTURE §11)',
      429: '`rate_limited`: the key spent its events per minute (a batch spends one per event); `backpressure` while the buffer is over its high-water mark, or this key holds more than BUFFER_MAX_SHARE_PER_KEY of it',
      503: 'Also `buffer_unavailable`',
    }),
  },
});

export const ingestBatch = createRoute({
  method: 'post',
  path: '/v1/events/batch',
  operationId: 'ingestBatch',
  tags: ['events'],
  summary: 'Ingest a batch of events',
  description: `Up to ${EVENT_LIMITS.maxBatchEvents} events, as \`{"events":[…]}\` or NDJSON; valid events are accepted even when others are rejected (\`invalid_event\`, \`invalid_json\`, \`service_not_allowed\` for a service the key is not bound to, \`schema_violation\` or \`unknown_event_type\` from the service's tracking plan). Accepts \`Content-Encoding: gzip\`.`,
  security: needs('ingest'),
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          schema: BATCH_BODY,
        },
        'application/x-ndjson': {
          schema: {
            type: 'string',
            description: 'One event (EventInput) per line; a line that is not JSON is rejected on its own',
          },
        },
      },
    },
  },
  responses: {
    202: {
      description: 'Every event accepted, a duplicate, skipped or rejected',
      content: json(BatchResult),
    },
    ...errorResponses(INGEST_ERRORS, {
      400: '`invalid_batch`, `invalid_json`, `incomplete_body`',
      413: 'Also `batch_too_large`: over the batch limit, or more events than the key may send in a minute (split it)',
      429: '`rate_limited`: the key spent its events per minute (a batch spends one per event); `backpressure` while the buffer is over its high-water mark, or this key holds more than BUFFER_MAX_SHARE_PER_KEY of it',
      503: 'Also `buffer_unavailable`',
    }),
  },
});

// ---- Handlers -----------------------------------------------------------------------------

/** `POST /v1/events`, `POST /v1/events/batch`, `GET /v1/events`. */
export function eventRoutes(deps: EventRoutesDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  app.openAPIRegistry.registerComponent('schemas', 'EventInput', EVENT_INPUT);
  registerIngest(app, deps);
  registerEventQuery(app, deps);
  return app;
}

/** One ingest request once its caller is known, however it is served (Hono or the fast path). */
export interface IngestCall {
  principal: Principal;
  /** Its headers and body. */
  source: BodySource;
  /** Its live records, while anyone has the live view open. */
  live: LiveRequest | undefined;
  /** Spends `n` events of the key's limit, or throws its 429 or 413. */
  spend(n: number): Promise<void>;
}

export interface IngestHandlers {
  /** `POST /v1/events`: the 202 body. */
  one(call: IngestCall): Promise<SingleOutcome>;
  /** `POST /v1/events/batch`: the 202 body. */
  batch(call: IngestCall): Promise<BatchOutcome>;
}

/** What the two ingest routes do: read the body (gzip, NDJSON, limits), spend, ingest. */
export function ingestHandlers(deps: EventRoutesDeps): IngestHandlers {
  const { config, metrics } = deps;
  const pipeline = ingestPipeline(deps);
  return {
    async one({ principal, source, live, spend }) {
      if (live) live.count = 1;
      bodyKindOf(source.header('content-type'), ['json']);
      const input = parseJson(await readBodyOf(source, config.MAX_BODY_BYTES));
      await spend(1);
      metrics.eventsReceived.inc();
      return pipeline.one(principal, input, live);
    },
    async batch({ principal, source, live, spend }) {
      const kind = bodyKindOf(source.header('content-type'), ['json', 'ndjson']);
      const text = await readBodyOf(source, config.MAX_BODY_BYTES);
      const rejected: Rejection[] = [];
      // Both readers refuse more than EVENT_LIMITS.maxBatchEvents with 413 batch_too_large.
      const inputs = kind === 'json' ? batchFromJson(parseJson(text)) : batchFromNdjson(text, rejected);
      if (live) live.count = inputs.length + rejected.length;
      // Every event of the request counts against the key's limit, valid or not.
      await spend(inputs.length + rejected.length);
      metrics.eventsReceived.inc(inputs.length + rejected.length);
      const ctx = pipeline.validation(principal.keyId);
      return pipeline.many(principal, inputs, rejected, ctx, undefined, live);
    },
  };
}

/**
 * The two ingest handlers, written by hand: they read raw bodies (gzip, NDJSON, limits), so
 * their declarations carry no zod validator. The ingest fast path (`fast-ingest.ts`) serves
 * the same routes with the same handlers when Node serves them.
 */
function registerIngest(app: OpenAPIHono<AppEnv>, deps: EventRoutesDeps): void {
  const handlers = ingestHandlers(deps);
  const call = (c: Context<AppEnv>): IngestCall => ({
    principal: c.get('principal'),
    source: { header: (n) => c.req.header(n), incoming: c.env?.incoming, web: () => c.req.raw.body },
    live: liveRequest(c, deps.live),
    spend: (n) => spendEvents(c, n),
  });
  app.openapi({ ...ingestOne, middleware: [requireScope(deps.keys, 'ingest')] }, async (c) =>
    c.json(await handlers.one(call(c)), 202),
  );
  app.openapi({ ...ingestBatch, middleware: [requireScope(deps.keys, 'ingest')] }, async (c) =>
    c.json(await handlers.batch(call(c)), 202),
  );
}

/** The events of a parsed `{"events":[…]}` body, by index; `400 invalid_batch` or `413 batch_too_large` for the whole body. */
export function batchFromJson(body: unknown): { index: number; value: unknown }[] {
  if (typeof body !== 'object' || body === null || !Array.isArray((body as { events?: unknown }).events)) {
    throw new ApiError('invalid_batch', 400, 'body must be {"events": [...]}');
  }
  const keys = Object.keys(body);
  if (keys.length !== 1) {
    throw new ApiError('invalid_batch', 400, 'body must be {"events": [...]} with no other field');
  }
  const list = (body as { events: unknown[] }).events;
  if (list.length > EVENT_LIMITS.maxBatchEvents) {
    throw new ApiError('batch_too_large', 413, `a batch holds at most ${EVENT_LIMITS.maxBatchEvents} events`);
  }
  if (list.length === 0) throw new ApiError('invalid_batch', 400, 'the batch is empty');
  return list.map((value, index) => ({ index, value }));
}

/** One event per non-empty line; a line that is not JSON is rejected on its own. */
export function batchFromNdjson(text: string, rejected: Rejection[]): { index: number; value: unknown }[] {
  const out: { index: number; value: unknown }[] = [];
  let index = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (index >= EVENT_LIMITS.maxBatchEvents) {
      throw new ApiError(
        'batch_too_large',
        413,
        `a batch holds at most ${EVENT_LIMITS.maxBatchEvents} events`,
      );
    }
    try {
      out.push({ index, value: parseJsonExact(line) });
    } catch {
      rejected.push({ index, code: 'invalid_json', message: 'line is not valid JSON' });
    }
    index++;
  }
  if (index === 0) throw new ApiError('invalid_batch', 400, 'the batch is empty');
  return out;
}
