import { createRoute, z } from '@hono/zod-openapi';
import type { Scope } from '../../store/api-keys.repo.ts';
import { ANY_ERRORS, errorResponses, json, needs } from '../openapi.ts';

// The declarations of `health.ts`: liveness, readiness and metrics need no key
// (`security: []`); the details need a key with `read` or `admin`.

/** A key with any of these may read the health details. */
export const DETAILS_SCOPES: readonly Scope[] = ['read', 'admin'];

export const Check = z
  .strictObject({
    ok: z.boolean(),
    latencyMs: z.number().optional(),
    error: z.string().optional(),
  })
  .openapi('Check');

const bufferShape = {
  length: z.number().int().openapi({ description: 'Entries not yet persisted' }),
  pending: z.number().int().openapi({ description: 'Delivered to a worker, not yet acknowledged' }),
  lag: z.number().int().openapi({ description: 'Not yet delivered to any worker' }),
  maxEvents: z.number().int(),
  utilisation: z.number().openapi({ description: 'length / maxEvents' }),
  memoryRatio: z
    .number()
    .nullable()
    .openapi({ description: 'used_memory / maxmemory; null without maxmemory' }),
  deadLetters: z.number().int(),
  backpressure: z.boolean(),
  partitions: z.array(
    z.strictObject({
      partition: z.number().int(),
      length: z.number().int(),
      pending: z.number().int(),
      lag: z.number().int().nullable(),
    }),
  ),
};

export const BufferSnapshot = z.strictObject(bufferShape).openapi('BufferSnapshot');

const Breaker = z.enum(['closed', 'half-open', 'open']);
const Trigger = z.enum(['connection', 'slow_insert', 'error_rate']);

const Memory = z
  .strictObject({
    rssBytes: z.number().int(),
    heapUsedBytes: z.number().int(),
    heapTotalBytes: z.number().int(),
    externalBytes: z.number().int(),
    limitBytes: z
      .number()
      .int()
      .openapi({ description: "The container's memory limit, else the host's memory" }),
    systemFreeBytes: z.number().int(),
  })
  .openapi('Memory');

const Volume = z
  .strictObject({
    path: z.string(),
    freeBytes: z.number().int(),
    totalBytes: z.number().int(),
    low: z.boolean().openapi({ description: 'Fewer free bytes than CHECKPOINT_MIN_FREE_BYTES' }),
  })
  .openapi('Volume');

export const ReadRoute = z
  .strictObject({
    replicaConfigured: z.boolean().openapi({ description: 'DATABASE_READ_URL is set' }),
    target: z.enum(['replica', 'primary']).openapi({ description: 'Where reads go now' }),
    lagS: z.number().nullable().openapi({ description: "The replica's replay lag at the last check" }),
    reason: z
      .string()
      .nullable()
      .openapi({ description: 'Why reads are on the primary while a replica is configured' }),
    checkedAt: z.string().nullable().openapi({ format: 'date-time' }),
  })
  .openapi('ReadRoute');

/** This process's memory and its view of the checkpoint volume (absent when CHECKPOINT_DIR is not on this host). */
export const Resources = z
  .strictObject({
    memory: Memory,
    checkpointVolume: Volume.optional(),
    minFreeBytes: z.number().int().openapi({ description: 'CHECKPOINT_MIN_FREE_BYTES' }),
  })
  .openapi('Resources');

/** Every live worker's breaker and checkpoint, and the worst of them. */
const workersShape = {
  circuitBreaker: z.union([Breaker, z.enum(['no workers', 'unknown'])]).openapi({
    description: "The worst worker's breaker; `unknown` when the workers' reports cannot be read",
  }),
  circuitBreakerTrigger: Trigger.nullable().openapi({
    description:
      'What opened the worst open (or probing) breaker: connection failures, slow inserts or the error rate',
  }),
  checkpoint: z
    .strictObject({
      events: z.number().int(),
      segments: z.number().int(),
      bytes: z.number().int(),
      failed: z.array(z.string()),
    })
    .nullable(),
  workers: z
    .array(
      z.object({
        name: z.string(),
        breaker: Breaker,
        breakerSince: z.string().openapi({ format: 'date-time' }),
        breakerTrigger: Trigger.optional().openapi({
          description: 'What opened it last (kept after it closes)',
        }),
        breakerReason: z.string().optional(),
        volume: Volume.optional().openapi({
          description: "The checkpoint volume's space on the worker's host",
        }),
        memory: Memory.optional(),
        checkpoint: z.object({
          segments: z.number().int(),
          bytes: z.number().int(),
          events: z.number().int(),
          failed: z.string().optional(),
        }),
        at: z.string().openapi({ format: 'date-time' }),
      }),
    )
    .nullable(),
};

const WorkersSummary = z.strictObject(workersShape);
/** What `workersSummary` in health.ts returns. */
export type WorkersSummary = z.infer<typeof WorkersSummary>;

export const Health = z
  .strictObject({
    status: z.enum(['ok', 'degraded', 'unavailable']),
    redis: Check,
    database: Check,
    buffer: BufferSnapshot.nullable(),
    reads: ReadRoute,
    resources: Resources,
    ...workersShape,
  })
  .openapi('Health');

export const Readiness = z
  .strictObject({ status: z.enum(['ok', 'degraded', 'unavailable']) })
  .openapi('Readiness', {
    description:
      'A bare status: `degraded` (still 200) when a checkpoint volume has fewer free bytes than CHECKPOINT_MIN_FREE_BYTES; which dependency failed is in `/health`',
  });

export const DatabaseHealth = z
  .strictObject({
    status: z.enum(['up', 'down', 'checkpoint_failed']),
    ...Check.shape,
    reads: ReadRoute,
    ...workersShape,
  })
  .openapi('DatabaseHealth');

export const BusinessHealth = z
  .strictObject({
    status: z.literal('ok'),
    window: z.literal('24h'),
    cachedForS: z.number(),
    from: z.string().openapi({ format: 'date-time' }),
    computedAt: z.string().openapi({ format: 'date-time' }),
    total: z.number().int(),
    byService: z.array(z.strictObject({ service: z.string(), events: z.number().int() })),
    hourly: z.array(
      z.strictObject({ hour: z.string().openapi({ format: 'date-time' }), events: z.number().int() }),
    ),
    topServices: z.array(
      z.strictObject({ service: z.string(), events: z.number().int(), share: z.number() }),
    ),
  })
  .openapi('BusinessHealth');

const Unavailable = z
  .strictObject({ status: z.literal('unavailable'), error: z.string() })
  .openapi('HealthUnavailable');

const operation = <const P extends string>(path: P, operationId: string, summary: string) => ({
  method: 'get' as const,
  path,
  operationId,
  summary,
  tags: ['operations'],
  security: [],
});

/** 404 on the admin listener when ADMIN_PORT is set. */
const ELSEWHERE = errorResponses([404, ...ANY_ERRORS]);

const DETAIL_NOTE =
  'Needs a key with the `read` or `admin` scope. With ADMIN_PORT set, served only on that port.';

/** A detail: a key with `read` or `admin`; with ADMIN_PORT set, only on the admin listener. */
const detail = <const P extends string>(path: P, operationId: string, summary: string) => ({
  ...operation(path, operationId, summary),
  security: DETAILS_SCOPES.flatMap(needs),
  description: DETAIL_NOTE,
});
const DETAIL_ERRORS = errorResponses([401, 403, 404, 429, ...ANY_ERRORS], {
  404: 'With ADMIN_PORT set, on the public listener',
  429: '`auth_throttled`: too many failed authentications from this address; see Retry-After',
});

export const live = createRoute({
  ...operation('/health/live', 'live', 'Liveness: 200 while the process runs'),
  description: 'Answered on both listeners when ADMIN_PORT is set.',
  responses: {
    200: { description: 'Alive', content: json(z.strictObject({ status: z.literal('ok') })) },
    ...errorResponses(ANY_ERRORS),
  },
});

export const ready = createRoute({
  ...operation('/health/ready', 'ready', 'Readiness: 200 while Redis answers'),
  description:
    "With PostgreSQL down the API still accepts events (the buffer absorbs them), so only Redis decides. `degraded` (200) when a checkpoint volume (this host's, or any worker's) has fewer free bytes than CHECKPOINT_MIN_FREE_BYTES.",
  responses: {
    200: {
      description:
        'Ready (also while PostgreSQL is down: ingest goes on); `degraded` when checkpoint space is low',
      content: json(Readiness),
    },
    503: { description: 'Not ready: Redis does not answer', content: json(Readiness) },
    ...ELSEWHERE,
  },
});

export const bufferHealth = createRoute({
  ...detail('/health/buffer', 'bufferHealth', 'Buffer length, pending, lag, utilisation, dead letters'),
  responses: {
    200: {
      description: 'The buffer',
      content: json(z.strictObject({ status: z.literal('ok'), ...bufferShape })),
    },
    503: { description: 'Redis does not answer', content: json(Unavailable) },
    ...DETAIL_ERRORS,
  },
});

export const databaseHealth = createRoute({
  ...detail('/health/database', 'databaseHealth', 'Database, circuit breakers and checkpoints'),
  responses: {
    200: {
      description: 'Up: reachable, no breaker open, every checkpoint writable',
      content: json(DatabaseHealth),
    },
    503: { description: 'Down, a breaker open, or a checkpoint failed', content: json(DatabaseHealth) },
    ...DETAIL_ERRORS,
  },
});

export const businessHealth = createRoute({
  ...detail('/health/business', 'businessHealth', 'Events by service and hour over 24 hours'),
  description: `Computed at most once a minute per process. ${DETAIL_NOTE}`,
  responses: {
    200: { description: 'The summary', content: json(BusinessHealth) },
    503: { description: 'The database does not answer', content: json(Unavailable) },
    ...DETAIL_ERRORS,
  },
});

export const health = createRoute({
  ...detail('/health', 'health', 'Everything at once'),
  responses: {
    200: { description: 'Redis answers (`degraded` when something else is wrong)', content: json(Health) },
    503: { description: 'Redis does not answer', content: json(Health) },
    ...DETAIL_ERRORS,
  },
});

export const metrics = createRoute({
  ...operation('/metrics', 'metrics', 'Prometheus metrics'),
  description: 'Only on the admin listener when ADMIN_PORT is set; bind or protect it in production.',
  responses: {
    200: {
      description: 'Prometheus text exposition format',
      content: { 'text/plain': { schema: z.string() } },
    },
    ...ELSEWHERE,
  },
});
