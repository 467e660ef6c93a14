import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { Config } from '../../config.ts';
import { LIVE_OUTCOMES, parseLastEventId } from '../../live/entry.ts';
import { listParam } from '../../live/filter.ts';
import type { LiveHub } from '../../live/hub.ts';
import type { AppEnv } from '../env.ts';
import { ApiError } from '../errors.ts';
import type { KeyResolver } from '../key-resolver.ts';
import { requireScope } from '../middleware/auth.ts';
import { createRouter, errorResponses, invalidInput, needs, V1_ERRORS } from '../openapi.ts';

export interface LiveRoutesDeps {
  config: Pick<Config, 'LIVE_MAX_EVENTS_PER_S'>;
  keys: KeyResolver;
  /** Absent when the live view is turned off (LIVE_MAX_EVENTS_PER_S=0). */
  live?: LiveHub | undefined;
}

// ---- Declarations -------------------------------------------------------------------------

/** Values a filter may list at most: a filter is a choice, not a query language. */
const MAX_VALUES = 100;

/** A filter parameter: repeated, comma-separated, or both; each value checked by `item`. */
const filterParam = <T extends z.ZodType<string, string>>(
  item: T,
  description: string,
  values?: readonly string[],
) =>
  z
    .union([z.string(), z.array(z.string())])
    .optional()
    .transform((raw) => listParam(raw))
    .pipe(z.array(item).max(MAX_VALUES))
    .openapi({
      type: 'array',
      items: values ? { type: 'string', enum: [...values] } : { type: 'string' },
      description: `${description}; repeat the parameter or separate values with commas`,
    });

const LiveQuery = z.strictObject({
  service: filterParam(
    z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1–64 of [A-Za-z0-9._-]'),
    'Only these services (a refusal with no service counts for the services of the key that sent it)',
  ),
  type: filterParam(z.string().min(1).max(128), 'Only these event types'),
  outcome: filterParam(z.enum(LIVE_OUTCOMES), 'Only these outcomes', LIVE_OUTCOMES),
});

const FRAMES = `Server-Sent Events, one frame per outcome of every ingest request on every API process, as it happens:
\`ready\` first (\`{"maxPerSecond","heartbeatSeconds","filters","resumed"}\`), then \`outcome\` frames (id \`ENTRY/INDEX\`;
\`{"outcome","at","route","requestId","keyId","index","id","service","type"}\`, with \`event\` for accepted and duplicate,
\`code\` for skipped and refused, \`message\`, \`details\` and \`input\` (at most 8 KiB, else \`inputTruncated\`) for refused;
a request refused as a whole has \`index\` null and \`count\`), \`stats\` every second (\`{"at","accepted","duplicate","skipped","refused"}\`:
what matched in that second, before sampling), \`sampling\` when the rate changes (\`{"rate","matchingPerSecond","maxPerSecond"}\`),
\`gap\` (\`{"lastEventId","reason":"expired"}\`) when Last-Event-ID is older than what is kept, and a \`: ping\` comment every
heartbeatSeconds. A key bound to services sees their events, refusals of malformed events sent by keys of those services,
and whatever it sent itself. A client too slow to read is disconnected; it resumes with Last-Event-ID.`;

export const liveEvents = createRoute({
  method: 'get',
  path: '/v1/events/live',
  operationId: 'liveEvents',
  tags: ['events'],
  summary: 'Watch ingest outcomes live',
  description: `${FRAMES} Above LIVE_MAX_EVENTS_PER_S outcome frames a second it samples, and says at what rate.`,
  security: needs('read'),
  request: {
    query: LiveQuery,
    headers: z.object({
      'last-event-id': z
        .string()
        .optional()
        .openapi({ description: 'The id of the last outcome frame received: resume after it' }),
    }),
  },
  responses: {
    200: {
      description:
        'The event stream (ends when the client goes, the server stops, or the client reads too slowly)',
      content: { 'text/event-stream': { schema: { type: 'string' as const } } },
    },
    ...errorResponses([400, ...V1_ERRORS], {
      400: '`invalid_query` with `details` (an unknown outcome, a malformed service)',
      404: 'Also `live_disabled`: the live view is turned off (LIVE_MAX_EVENTS_PER_S=0)',
    }),
  },
});

// ---- Handlers -----------------------------------------------------------------------------

/** How long a stream ended at shutdown may take to deliver what it holds before its socket goes. */
const SHUTDOWN_GRACE_MS = 2_000;

/** `GET /v1/events/live`. */
export function liveRoutes(deps: LiveRoutesDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  app.openapi(
    {
      ...liveEvents,
      middleware: [
        requireScope(deps.keys, 'read'),
        invalidInput('invalid_query', 'invalid query parameters'),
      ],
    },
    async (c) => {
      const hub = deps.live;
      if (!hub)
        throw new ApiError('live_disabled', 404, 'the live view is turned off (LIVE_MAX_EVENTS_PER_S=0)');
      const filters = c.req.valid('query');
      const principal = c.get('principal');
      const lastEventId = c.req.header('last-event-id');
      const point = parseLastEventId(lastEventId);
      const outgoing = c.env?.outgoing;
      const listener = hub.open({
        viewer: { keyId: principal.keyId, services: principal.services },
        filters: { service: filters.service, type: filters.type, outcome: filters.outcome },
        resume: point && lastEventId ? { lastEventId, point } : undefined,
        requestId: c.get('requestId'),
        onClose: (reason) => {
          // A client that does not read what is queued must not hold the shutdown up.
          if (reason === 'shutdown' && outgoing)
            setTimeout(() => {
              if (!outgoing.writableFinished) outgoing.destroy();
            }, SHUTDOWN_GRACE_MS).unref();
        },
      });
      c.req.raw.signal.addEventListener('abort', () => listener.close('client_gone'), { once: true });
      c.header('content-type', 'text/event-stream; charset=utf-8');
      c.header('cache-control', 'no-cache, no-transform');
      // Proxies that buffer responses (nginx) would hold the frames back.
      c.header('x-accel-buffering', 'no');
      // The connection ends with the stream: nothing keeps an idle socket open at shutdown.
      c.header('connection', 'close');
      // A stream, not a typed response: the library has no type for text/event-stream.
      return c.body(listener.stream, 200) as never;
    },
  );
  return app;
}
