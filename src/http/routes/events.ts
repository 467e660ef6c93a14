import { Hono } from 'hono';
import { z } from 'zod';
import { BufferFullError } from '../../buffer/errors.ts';
import type { BufferMonitor } from '../../buffer/monitor.ts';
import type { BufferedEvent, EnqueueOutcome, EventProducer } from '../../buffer/producer.ts';
import type { MetadataCipher } from '../../compliance/metadata-cipher.ts';
import type { SubjectRegistry } from '../../compliance/subjects.ts';
import type { Config } from '../../config.ts';
import { maxRetentionDays } from '../../config.ts';
import { type NormalisedEvent, parseEvent, type ValidationContext } from '../../events/event.schema.ts';
import { EVENT_LIMITS } from '../../events/limits.ts';
import type { Db } from '../../store/db.ts';
import { classifyDbError } from '../../store/errors.ts';
import { decodeCursor, queryEvents } from '../../store/events.repo.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import { currentTraceparent, getTracer, inSpan, SpanKind } from '../../telemetry/tracing.ts';
import { bodyKind, parseJson, readBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, errors } from '../errors.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requireScope } from '../middleware/auth.ts';

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

interface Rejection {
  index: number;
  code: string;
  message: string;
  details?: { path: string; code: string; message: string }[];
}

const isoDate = z
  .string()
  .refine((s) => !Number.isNaN(Date.parse(s)), 'must be an RFC 3339 date-time')
  .transform((s) => new Date(s));

const listQuery = z.strictObject({
  service: z.string().min(1).max(64).optional(),
  type: z.string().min(1).max(128).optional(),
  userId: z.string().min(1).max(256).optional(),
  from: isoDate.optional(),
  to: isoDate.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(200).optional(),
});

/** `POST /v1/events`, `POST /v1/events/batch`, `GET /v1/events`. */
export function eventRoutes(deps: EventRoutesDeps): Hono<AppEnv> {
  const { config, producer, monitor, metrics } = deps;
  const app = new Hono<AppEnv>();
  const maxAgeMs = maxRetentionDays(config) * 86_400_000;
  const context = (): ValidationContext => ({ now: Date.now(), maxAgeMs });
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
      const outcomes = await producer.enqueue(items);
      for (const o of outcomes) (o === 'accepted' ? metrics.eventsAccepted : metrics.eventsDuplicate).inc();
      return outcomes;
    } catch (err) {
      metrics.eventsRejected.inc(
        { reason: err instanceof BufferFullError ? 'backpressure' : 'buffer_unavailable' },
        items.length,
      );
      throw err instanceof BufferFullError ? errors.backpressure() : errors.bufferUnavailable();
    }
  };

  const refuseWhenFull = (count: number) => {
    if (monitor.overloaded) {
      metrics.eventsRejected.inc({ reason: 'backpressure' }, count);
      throw errors.backpressure();
    }
  };

  app.post('/v1/events', requireScope(deps.keys, 'ingest'), async (c) => {
    bodyKind(c, ['json']);
    const input = parseJson(await readBody(c, config.MAX_BODY_BYTES));
    metrics.eventsReceived.inc();
    const validation = getTracer().startSpan('tributary.validate');
    const result = parseEvent(input, context());
    validation.end();
    if (!result.ok) {
      metrics.eventsRejected.inc({ reason: 'invalid_event' });
      throw new ApiError('invalid_event', 400, 'the event is invalid', { details: result.issues });
    }
    if (deps.subjects?.isOptedOut(result.event.userId)) {
      metrics.eventsSkipped.inc({ reason: 'user_opt_out' });
      return c.json({ id: result.event.id, status: 'skipped', reason: 'user_opt_out' }, 202);
    }
    refuseWhenFull(1);
    const { event, json } = sealer ? sealer.sealEvent(result) : result;
    const [outcome] = await enqueue(() => [{ event, json, traceparent: currentTraceparent() }]);
    return c.json({ id: result.event.id, status: outcome ?? 'accepted' }, 202);
  });

  app.post('/v1/events/batch', requireScope(deps.keys, 'ingest'), async (c) => {
    const kind = bodyKind(c, ['json', 'ndjson']);
    const text = await readBody(c, config.MAX_BODY_BYTES);
    const rejected: Rejection[] = [];
    // Both readers refuse more than EVENT_LIMITS.maxBatchEvents with 413 batch_too_large.
    const inputs = kind === 'json' ? batchFromJson(text) : batchFromNdjson(text, rejected);
    metrics.eventsReceived.inc(inputs.length + rejected.length);

    const ctx = context();
    const valid: { index: number; event: NormalisedEvent; json: string }[] = [];
    let skipped = 0;
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
      } else if (deps.subjects?.isOptedOut(result.event.userId)) {
        skipped++;
      } else {
        const { event, json } = sealer ? sealer.sealEvent(result) : result;
        valid.push({ index, event, json });
      }
    }
    validation.end();
    if (rejected.length > 0) metrics.eventsRejected.inc({ reason: 'invalid_event' }, rejected.length);
    if (skipped > 0) metrics.eventsSkipped.inc({ reason: 'user_opt_out' }, skipped);
    if (valid.length > 0) refuseWhenFull(valid.length);
    const outcomes =
      valid.length > 0
        ? await enqueue(() => {
            const traceparent = currentTraceparent();
            return valid.map((v) => ({ event: v.event, json: v.json, traceparent }));
          })
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

  app.get('/v1/events', requireScope(deps.keys, 'read'), async (c) => {
    const parsed = listQuery.safeParse(c.req.query());
    if (!parsed.success) {
      throw new ApiError('invalid_query', 400, 'invalid query parameters', {
        details: parsed.error.issues.map((i) => ({
          path: i.path.join('.'),
          code: i.code,
          message: i.message,
        })),
      });
    }
    const { cursor, ...q } = parsed.data;
    const after = cursor !== undefined ? decodeCursor(cursor) : undefined;
    if (cursor !== undefined && !after) {
      throw new ApiError('invalid_query', 400, 'invalid query parameters', {
        details: [{ path: 'cursor', code: 'invalid_cursor', message: 'not a cursor returned by this API' }],
      });
    }
    try {
      const page = await queryEvents(deps.db, after ? { ...q, after } : q);
      const cipher = deps.cipher;
      const rows = cipher ? page.rows.map((r) => ({ ...r, metadata: cipher.open(r.metadata) })) : page.rows;
      return c.json({ events: rows, nextCursor: page.cursor ?? null });
    } catch (err) {
      if (classifyDbError(err) === 'unavailable') throw errors.databaseUnavailable();
      throw err;
    }
  });

  return app;
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
      out.push({ index, value: JSON.parse(line) });
    } catch {
      rejected.push({ index, code: 'invalid_json', message: 'line is not valid JSON' });
    }
    index++;
  }
  if (index === 0) throw new ApiError('invalid_batch', 400, 'the batch is empty');
  return out;
}
