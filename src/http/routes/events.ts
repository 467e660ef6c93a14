import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { BufferMonitor } from '../../buffer/monitor.ts';
import type { BufferedEvent, EnqueueOutcome, EventProducer } from '../../buffer/producer.ts';
import type { MetadataCipher } from '../../compliance/metadata-cipher.ts';
import type { SubjectRegistry } from '../../compliance/subjects.ts';
import type { Config } from '../../config.ts';
import { maxRetentionDays } from '../../config.ts';
import {
  eventShape,
  type NormalisedEvent,
  parseEvent,
  type ValidationContext,
} from '../../events/event.schema.ts';
import { parseJsonExact } from '../../events/json-numbers.ts';
import { EVENT_LIMITS } from '../../events/limits.ts';
import type { Db } from '../../store/db.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import { currentTraceparent, getTracer, inSpan, SpanKind } from '../../telemetry/tracing.ts';
import { bodyKind, parseJson, readBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, errors, withBuffer } from '../errors.ts';
import { type KeyResolver, mayUseService, type Principal } from '../key-resolver.ts';
import { requireScope } from '../middleware/auth.ts';
import { spendEvents } from '../middleware/rate-limit.ts';
import { createRouter, errorResponses, handReadSchema, json, needs, V1_ERRORS } from '../openapi.ts';
import { registerEventQuery } from './events-query.ts';

export interface EventRoutesDeps {
  config: Pick<Config, 'MAX_BODY_BYTES' | 'RETENTION_DAYS' | 'RETENTION_BY_SERVICE'>;
  /** Opted-out subjects: their events are answered `skipped` and never buffered. */
  subjects?: SubjectRegistry;
  /** Encrypts the configured metadata keys before buffering; opens them for `read`. */
  cipher?: MetadataCipher | undefined;
  producer: EventProducer;
  monitor: BufferMonitor;
  db: Db;
  keys: KeyResolver;
  metrics: Metrics;
}

// ---- Declarations -------------------------------------------------------------------------

/** One event as a client sends it (ARCHITECTURE §3 "Event"); parsed by `parseEvent`. */
const EVENT_INPUT = handReadSchema(
  eventShape.extend({ metadata: z.record(z.string(), z.unknown()).nullish() }),
);
const eventInputRef = { $ref: '#/components/schemas/EventInput' };

const Id = z.guid().openapi({ description: 'The event id (the idempotency key)' });

export const IngestResult = z
  .union([
    z.strictObject({ id: Id, status: z.enum(['accepted', 'duplicate']) }),
    z.strictObject({ id: Id, status: z.literal('skipped'), reason: z.literal('user_opt_out') }),
  ])
  .openapi('IngestResult');
export type IngestResult = z.infer<typeof IngestResult>;

const Rejection = z.strictObject({
  index: z.number().int().min(0),
  code: z.string(),
  message: z.string(),
  details: z.array(z.strictObject({ path: z.string(), code: z.string(), message: z.string() })).optional(),
});
type Rejection = z.infer<typeof Rejection>;

export const BatchResult = z
  .strictObject({
    accepted: z.number().int().min(0),
    duplicates: z.number().int().min(0),
    skipped: z.number().int().min(0),
    ids: z.array(Id).openapi({ description: 'In request order: every event now stored or buffered' }),
    rejected: z.array(Rejection),
  })
  .openapi('BatchResult');
export type BatchResult = z.infer<typeof BatchResult>;

const INGEST_ERRORS = [400, 413, 415, ...V1_ERRORS] as const;

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
      400: '`invalid_event` with `details`, `invalid_json`, `incomplete_body`',
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
  description: `Up to ${EVENT_LIMITS.maxBatchEvents} events, as \`{"events":[…]}\` or NDJSON; valid events are accepted even when others are rejected (\`invalid_event\`, \`invalid_json\`, or \`service_not_allowed\` for a service the key is not bound to). Accepts \`Content-Encoding: gzip\`.`,
  security: needs('ingest'),
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          schema: {
            type: 'object',
            properties: {
              events: {
                type: 'array',
                items: eventInputRef,
                minItems: 1,
                maxItems: EVENT_LIMITS.maxBatchEvents,
              },
            },
            required: ['events'],
            additionalProperties: false,
          },
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

/**
 * The two ingest handlers, written by hand: they read raw bodies (gzip, NDJSON, limits), so
 * their declarations carry no zod validator.
 */
function registerIngest(app: OpenAPIHono<AppEnv>, deps: EventRoutesDeps): void {
  const { config, producer, monitor, metrics } = deps;
  const maxAgeMs = maxRetentionDays(config) * 86_400_000;
  const context = (keyId: string | undefined): ValidationContext => ({ now: Date.now(), maxAgeMs, keyId });
  // Undefined unless some metadata key is configured, so ingest pays nothing otherwise.
  const sealer = deps.cipher?.encrypting ? deps.cipher : undefined;

  /**
   * Buffers the events `build` returns, inside a producer span: the traceparent each entry
   * carries is that span's, so a worker's batch span links to it.
   */
  const enqueue = (build: () => BufferedEvent[]): Promise<EnqueueOutcome[]> =>
    inSpan(
      'tributary.enqueue',
      { kind: SpanKind.PRODUCER, attributes: { 'messaging.system': 'redis' } },
      () => enqueueNow(build()),
    );
  const enqueueNow = async (items: BufferedEvent[]): Promise<EnqueueOutcome[]> => {
    try {
      const outcomes = await withBuffer(() => producer.enqueue(items));
      for (const o of outcomes) (o === 'accepted' ? metrics.eventsAccepted : metrics.eventsDuplicate).inc();
      return outcomes;
    } catch (err) {
      metrics.eventsRejected.inc({ reason: err instanceof ApiError ? err.code : 'internal' }, items.length);
      throw err;
    }
  };

  // The whole buffer over its mark, or this key over its share of it (BUFFER_MAX_SHARE_PER_KEY).
  const refuseWhenFull = (count: number, keyId: string | undefined) => {
    if (monitor.overloaded || (keyId !== undefined && monitor.keyLoad?.isOver(keyId))) {
      metrics.eventsRejected.inc({ reason: 'backpressure' }, count);
      throw errors.backpressure();
    }
  };
  const counted = (keyId: string | undefined, outcomes: EnqueueOutcome[]) => {
    if (keyId !== undefined) monitor.keyLoad?.added(keyId, outcomes.filter((o) => o === 'accepted').length);
    return outcomes;
  };

  app.openapi({ ...ingestOne, middleware: [requireScope(deps.keys, 'ingest')] }, async (c) => {
    bodyKind(c, ['json']);
    const input = parseJson(await readBody(c, config.MAX_BODY_BYTES));
    await spendEvents(c, 1);
    metrics.eventsReceived.inc();
    const principal = c.get('principal');
    const validation = getTracer().startSpan('tributary.validate');
    const result = parseEvent(input, context(principal?.keyId));
    validation.end();
    if (!result.ok) {
      metrics.eventsRejected.inc({ reason: 'invalid_event' });
      throw new ApiError('invalid_event', 400, 'the event is invalid', { details: result.issues });
    }
    const refusal = serviceRefusal(principal, result.event.service);
    if (refusal) {
      metrics.eventsRejected.inc({ reason: refusal.code });
      throw new ApiError(refusal.code, 403, refusal.message);
    }
    if (deps.subjects?.isOptedOut(result.event.userId, result.event.anonymousId)) {
      metrics.eventsSkipped.inc({ reason: 'user_opt_out' });
      return c.json({ id: result.event.id, status: 'skipped', reason: 'user_opt_out' } as const, 202);
    }
    refuseWhenFull(1, principal?.keyId);
    const { event, json } = sealer ? sealer.sealEvent(result) : result;
    const [outcome] = counted(
      principal?.keyId,
      await enqueue(() => [{ event, json, traceparent: currentTraceparent() }]),
    );
    return c.json({ id: result.event.id, status: outcome ?? 'accepted' }, 202);
  });

  app.openapi({ ...ingestBatch, middleware: [requireScope(deps.keys, 'ingest')] }, async (c) => {
    const kind = bodyKind(c, ['json', 'ndjson']);
    const text = await readBody(c, config.MAX_BODY_BYTES);
    const rejected: Rejection[] = [];
    // Both readers refuse more than EVENT_LIMITS.maxBatchEvents with 413 batch_too_large.
    const inputs = kind === 'json' ? batchFromJson(text) : batchFromNdjson(text, rejected);
    // Every event of the request counts against the key's limit, valid or not.
    await spendEvents(c, inputs.length + rejected.length);
    metrics.eventsReceived.inc(inputs.length + rejected.length);

    const principal = c.get('principal');
    const ctx = context(principal?.keyId);
    const valid: { index: number; event: NormalisedEvent; json: string }[] = [];
    let skipped = 0;
    let notAllowed = 0;
    const validation = getTracer().startSpan('tributary.validate', { attributes: { events: inputs.length } });
    for (const { index, value } of inputs) {
      const result = parseEvent(value, ctx);
      if (!result.ok) {
        rejected.push({
          index,
          code: 'invalid_event',
          message: 'the event is invalid',
          details: result.issues,
        });
        continue;
      }
      const refusal = serviceRefusal(principal, result.event.service);
      if (refusal) {
        notAllowed++;
        rejected.push({ index, ...refusal });
      } else if (deps.subjects?.isOptedOut(result.event.userId, result.event.anonymousId)) {
        skipped++;
      } else {
        const { event, json } = sealer ? sealer.sealEvent(result) : result;
        valid.push({ index, event, json });
      }
    }
    validation.end();
    if (notAllowed > 0) metrics.eventsRejected.inc({ reason: 'service_not_allowed' }, notAllowed);
    if (rejected.length > notAllowed) {
      metrics.eventsRejected.inc({ reason: 'invalid_event' }, rejected.length - notAllowed);
    }
    if (skipped > 0) metrics.eventsSkipped.inc({ reason: 'user_opt_out' }, skipped);
    if (valid.length > 0) refuseWhenFull(valid.length, principal?.keyId);
    const outcomes =
      valid.length > 0
        ? counted(
            principal?.keyId,
            await enqueue(() => {
              const traceparent = currentTraceparent();
              return valid.map((v) => ({ event: v.event, json: v.json, traceparent }));
            }),
          )
        : [];
    rejected.sort((a, b) => a.index - b.index);
    return c.json(
      {
        accepted: outcomes.filter((o) => o === 'accepted').length,
        duplicates: outcomes.filter((o) => o === 'duplicate').length,
        skipped,
        ids: valid.map((v) => v.event.id),
        rejected,
      },
      202,
    );
  });
}

interface ServiceRefusal {
  code: 'service_not_allowed';
  message: string;
}

/** Why `principal` may not write an event of `service` (ARCHITECTURE §11), or undefined when it may. */
function serviceRefusal(principal: Principal | undefined, service: string): ServiceRefusal | undefined {
  if (!principal || mayUseService(principal, service)) return undefined;
  return { code: 'service_not_allowed', message: `this key may not write events of service "${service}"` };
}

function batchFromJson(text: string): { index: number; value: unknown }[] {
  const body = parseJson(text);
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
function batchFromNdjson(text: string, rejected: Rejection[]): { index: number; value: unknown }[] {
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
