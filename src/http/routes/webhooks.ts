import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { Logger } from 'pino';
import type { Config } from '../../config.ts';
import type { LiveHub } from '../../live/hub.ts';
import { mapRecord } from '../../sources/mapping.ts';
import { signatureValid } from '../../sources/webhook.ts';
import { parseJson, readBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { ApiError } from '../errors.ts';
import { type IngestDeps, ingestPipeline } from '../ingest.ts';
import { liveRequest } from '../live-request.ts';
import type { RateLimiter } from '../middleware/rate-limit.ts';
import { rateLimitHeaders } from '../middleware/rate-limit.ts';
import { createRouter, errorResponses, json } from '../openapi.ts';
import type { WebhookSources } from '../webhook-sources.ts';
import { IngestResult } from './events.ts';
import { sourcePrincipal } from './sources.ts';

export interface WebhookRoutesDeps extends IngestDeps {
  config: IngestDeps['config'] &
    Pick<Config, 'MAX_BODY_BYTES' | 'DEFAULT_KEY_RATE_LIMIT' | 'DEFAULT_RATE_LIMIT_PER_MINUTE'>;
  logger: Logger;
  webhooks: WebhookSources;
  rateLimiter?: RateLimiter | undefined;
  live?: LiveHub | undefined;
}

/** `tributary_webhook_deliveries_total{outcome}`. */
const DELIVERY_OUTCOMES = [
  'accepted',
  'duplicate',
  'skipped',
  'rejected',
  'bad_signature',
  'rate_limited',
] as const;

/** Deliveries a minute of a webhook source without a limit of its own, when no default limit is configured. */
const FALLBACK_PER_MINUTE = 600;

export const receiveWebhook = createRoute({
  method: 'post',
  path: '/v1/webhooks/{sourceId}',
  operationId: 'receiveWebhook',
  tags: ['events'],
  summary: 'A third party’s webhook delivery to a webhook source',
  description:
    'No API key: the source’s `signatureHeader` must hold the hex HMAC-SHA256 of the raw body under its secret, optionally prefixed `sha256=` (GitHub’s form). The JSON payload becomes one event by the source’s mapping and goes through the same checks as `POST /v1/events` (ARCHITECTURE §15).',
  security: [],
  request: {
    params: z.object({ sourceId: z.string().openapi({ description: 'The webhook source’s id' }) }),
    body: {
      required: true,
      content: {
        'application/json': { schema: { type: 'object', description: 'The third party’s payload' } },
      },
    },
  },
  responses: {
    202: {
      description: 'Stored (or a duplicate of a delivery already stored); the event’s id',
      content: json(IngestResult),
    },
    ...errorResponses([400, 401, 404, 413, 429, 503, 408, 431, 500], {
      400: '`invalid_json`; `invalid_event` (the payload lacks the mapped id, type or timestamp, or fails validation) with `details`; `schema_violation`',
      401: '`invalid_signature`: the signature header is missing or wrong; nothing is stored',
      404: 'No webhook source with this id',
      429: '`rate_limited`: over the source’s deliveries per minute; `backpressure`',
      503: 'Also `source_paused` (retry later: nothing was stored), `database_unavailable`',
    }),
  },
});

/** `POST /v1/webhooks/:sourceId` (§15): authenticated by its signature, not by a key. */
export function webhookRoutes(deps: WebhookRoutesDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  const pipeline = ingestPipeline(deps);
  /** Sources whose delivery series exist (at 0 from their first delivery on). */
  const counted = new Set<string>();
  const defaultPerMinute =
    deps.config.DEFAULT_KEY_RATE_LIMIT ?? deps.config.DEFAULT_RATE_LIMIT_PER_MINUTE ?? FALLBACK_PER_MINUTE;

  app.openapi(receiveWebhook, async (c) => {
    const target = await deps.webhooks.get(c.req.param('sourceId'));
    if (!target) throw new ApiError('not_found', 404, 'no webhook source with this id');
    if (!counted.has(target.name)) {
      counted.add(target.name);
      for (const outcome of DELIVERY_OUTCOMES)
        deps.metrics.webhookDeliveries.inc({ source: target.name, outcome }, 0);
    }
    const count = (outcome: (typeof DELIVERY_OUTCOMES)[number]) =>
      deps.metrics.webhookDeliveries.inc({ source: target.name, outcome });
    const text = await readBody(c, deps.config.MAX_BODY_BYTES);
    if (!signatureValid(target.config.secret, text, c.req.header(target.config.signatureHeader))) {
      count('bad_signature');
      throw new ApiError(
        'invalid_signature',
        401,
        `the ${target.config.signatureHeader} header must hold the HMAC-SHA256 of the body under the source's secret`,
      );
    }
    if (target.paused) {
      throw new ApiError('source_paused', 503, 'this source is paused; nothing was stored, retry later', {
        retryAfter: 60,
      });
    }
    const perMinute = target.config.rateLimitPerMinute ?? defaultPerMinute;
    const principal = sourcePrincipal(target.id, target.service, perMinute);
    c.set('principal', principal);
    const decision = await deps.rateLimiter?.consume(principal.keyId, perMinute);
    if (decision) for (const [name, value] of rateLimitHeaders(decision)) c.header(name, value);
    if (decision && !decision.allowed) {
      count('rate_limited');
      throw new ApiError(
        'rate_limited',
        429,
        `this source is over its limit of ${perMinute} deliveries per minute`,
        {
          retryAfter: decision.retryAfterS,
        },
      );
    }
    const payload = parseJson(text);
    const live = liveRequest(c, deps.live);
    if (live) live.count = 1;
    deps.metrics.eventsReceived.inc();
    const mapped = mapRecord(payload, target.mapping, {}, new Date().toISOString());
    const refused = (err: ApiError) => {
      count('rejected');
      deps.webhooks.record(target.id, 'rejected', {
        at: new Date().toISOString(),
        code: err.code,
        message: err.message,
        ...(err.details ? { details: err.details } : {}),
      });
    };
    if (!mapped.ok) {
      deps.metrics.eventsRejected.inc({ reason: 'invalid_event' });
      const err = new ApiError('invalid_event', 400, 'the payload cannot become an event', {
        details: [mapped.problem],
      });
      refused(err);
      live?.refused(0, err, payload);
      throw err;
    }
    try {
      const outcome = await pipeline.one(principal, mapped.input, live);
      count(outcome.status);
      deps.webhooks.record(target.id, outcome.status);
      return c.json(outcome, 202);
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) refused(err);
      throw err;
    }
  });
  return app;
}
