import type { OpenAPIHono } from '@hono/zod-openapi';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { DeadLetterStream } from '../buffer/dead-letter.ts';
import type { BufferMonitor } from '../buffer/monitor.ts';
import type { EventProducer } from '../buffer/producer.ts';
import type { RedisLike } from '../buffer/redis-client.ts';
import type { WorkerStatusBoard } from '../buffer/worker-status.ts';
import type { ErasureService } from '../compliance/erasure.ts';
import type { ExportOptions } from '../compliance/export.ts';
import type { MetadataCipher } from '../compliance/metadata-cipher.ts';
import type { SubjectRegistry } from '../compliance/subjects.ts';
import type { Config } from '../config.ts';
import { consoleRoutes } from '../console/serve.ts';
import type { LiveHub } from '../live/hub.ts';
import type { RetentionService } from '../retention/service.ts';
import type { SourceSecrets } from '../sources/secrets.ts';
import { appendAudit } from '../store/audit.repo.ts';
import type { Db } from '../store/db.ts';
import type { ReadRouter } from '../store/read-replica.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AppEnv } from './env.ts';
import { ApiError, errorResponse, toApiError } from './errors.ts';
import type { KeyResolver } from './key-resolver.ts';
import { publishRefusedRequest } from './live-request.ts';
import { auditTrail } from './middleware/audit.ts';
import { authenticate, clientAddress } from './middleware/auth.ts';
import { ingestCors } from './middleware/cors.ts';
import { splitListeners } from './middleware/listener.ts';
import { type RateLimiter, rateLimit } from './middleware/rate-limit.ts';
import { requestContext, requestLogger } from './middleware/request-context.ts';
import { apiSecureHeaders } from './middleware/security-headers.ts';
import { refuseNul } from './middleware/url-guard.ts';
import { createRouter, registerSecuritySchemes } from './openapi.ts';
import type { PlanRegistry } from './plan-registry.ts';
import { adminRoutes } from './routes/admin.ts';
import { auditRoutes } from './routes/audit.ts';
import { registerDocument } from './routes/document.ts';
import { dsarRoutes } from './routes/dsar.ts';
import { eventRoutes } from './routes/events.ts';
import { healthRoutes } from './routes/health.ts';
import { liveRoutes } from './routes/live.ts';
import { schemaRoutes } from './routes/schemas.ts';
import { segmentRoutes } from './routes/segment.ts';
import { validateRoutes } from './routes/validate.ts';
import { webhookRoutes } from './routes/webhooks.ts';
import { whoamiRoutes } from './routes/whoami.ts';
import { segmentBodyKey } from './segment-body.ts';
import type { WebhookSources } from './webhook-sources.ts';

/** Webhook deliveries: signed by their source's secret, not sent with a key. */
const WEBHOOK_PREFIX = '/v1/webhooks/';

export interface AppDeps {
  config: Pick<
    Config,
    | 'MAX_BODY_BYTES'
    | 'RETENTION_DAYS'
    | 'RETENTION_BY_SERVICE'
    | 'TRUST_PROXY'
    | 'TLS_CERT_FILE'
    | 'DEFAULT_KEY_RATE_LIMIT'
    | 'DEFAULT_RATE_LIMIT_PER_MINUTE'
    | 'KEY_ROTATION_OVERLAP_S'
    | 'CORS_ORIGINS'
    | 'LIVE_MAX_EVENTS_PER_S'
    | 'SOURCE_HTTP_TIMEOUT_MS'
    | 'SOURCE_HTTP_MAX_BYTES'
    | 'SOURCE_MAX_RETRY_AFTER_S'
    | 'SOURCE_LEASE_TTL_S'
    | 'CHECKPOINT_DIR'
    | 'CHECKPOINT_MIN_FREE_BYTES'
  >;
  logger: Logger;
  metrics: Metrics;
  redis: RedisLike;
  pool: pg.Pool;
  db: Db;
  /** Reads (`GET /v1/events`, the business summary; exports through `exports`): the replica while it keeps up. */
  reads: ReadRouter;
  producer: EventProducer;
  monitor: BufferMonitor;
  deadLetters: DeadLetterStream;
  keys: KeyResolver;
  /** Per-key rate limits; absent, nothing is limited. */
  rateLimiter?: RateLimiter;
  /** Breaker and checkpoint state reported by every worker. */
  workers: WorkerStatusBoard;
  retention: RetentionService;
  subjects: SubjectRegistry;
  erasure: ErasureService;
  exports: ExportOptions;
  /** Encryption of configured metadata keys; absent, metadata is stored as sent. */
  cipher?: MetadataCipher | undefined;
  /** Tracking plans (§14): checked at ingest, written and read by `/v1/schemas`. */
  plans: PlanRegistry;
  /** The live view (`GET /v1/events/live`); absent when it is turned off. */
  live?: LiveHub | undefined;
  /** Sources' secrets (§15): sealed when a source is written, opened to try it and to check webhook signatures. */
  sourceSecrets: SourceSecrets;
  /** Webhook sources by id, cached (`POST /v1/webhooks/:sourceId`). */
  webhooks: WebhookSources;
  /** The built web console (`npm run build`); absent, src/console/dist. */
  consoleDir?: string;
}

/**
 * The whole HTTP API as a Hono app (no server attached). Its routes are declared with
 * `@hono/zod-openapi`, so `/openapi.json` describes exactly what it serves.
 */
export function createApp(deps: AppDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  registerSecuritySchemes(app);
  app.use('*', requestContext(deps.logger, deps.metrics));
  app.use('*', apiSecureHeaders(deps.config.TLS_CERT_FILE !== undefined));
  app.use('*', clientAddress(deps.config.TRUST_PROXY));
  // Before authentication, so refused calls are recorded too; before the listener
  // split, so admin calls tried on the public port are as well.
  app.use(
    '*',
    auditTrail({
      append: (record) => appendAudit(deps.db, record),
      logger: deps.logger,
      metrics: deps.metrics,
      trustProxy: deps.config.TRUST_PROXY,
    }),
  );
  // After the audit trail, so a refused NUL is recorded too.
  app.use('*', refuseNul());
  app.use('*', splitListeners());
  // Before authentication: a browser's preflight carries no key.
  if (deps.config.CORS_ORIGINS.length > 0) app.use('*', ingestCors(deps.config.CORS_ORIGINS));
  // A Segment call may carry its write key in the body: read before authentication.
  app.use('/v1/*', segmentBodyKey());
  // Every /v1 route needs a key, and each request is counted once against its limit;
  // the routes then check their scope with requireScope.
  // Webhook deliveries carry the source's signature instead (§15): their route checks it.
  const keyed = [
    authenticate(deps.keys),
    rateLimit({
      limiter: deps.rateLimiter,
      defaultPerMinute: deps.config.DEFAULT_KEY_RATE_LIMIT ?? deps.config.DEFAULT_RATE_LIMIT_PER_MINUTE,
    }),
  ];
  for (const middleware of keyed) {
    app.use('/v1/*', (c, next) => (c.req.path.startsWith(WEBHOOK_PREFIX) ? next() : middleware(c, next)));
  }

  app.route('/', healthRoutes(deps));
  app.route('/', eventRoutes(deps));
  app.route('/', liveRoutes(deps));
  app.route('/', segmentRoutes(deps));
  app.route('/', webhookRoutes(deps));
  app.route('/', validateRoutes(deps));
  app.route('/', schemaRoutes(deps));
  app.route('/', adminRoutes(deps));
  app.route('/', auditRoutes(deps));
  app.route('/', dsarRoutes(deps));
  app.route('/', whoamiRoutes());
  // The console's page and files: no key needed to load them.
  app.route('/', consoleRoutes(deps.consoleDir ? { distDir: deps.consoleDir } : {}));
  registerDocument(app);

  app.notFound((c) =>
    errorResponse(c, new ApiError('not_found', 404, `no route for ${c.req.method} ${c.req.path}`)),
  );
  // The one error path: ApiErrors as they are, zod refusals as the route's 400, the rest a
  // logged 500 (ApiErrors are the API's own answers: a 503 is logged where it is decided).
  app.onError((err, c) => {
    const answer = toApiError(err, c);
    if (answer.status >= 500 && !(err instanceof ApiError)) {
      requestLogger(c, deps.logger).error({ err }, 'unhandled error');
    }
    publishRefusedRequest(c, deps.live, answer);
    return errorResponse(c, answer);
  });
  return app;
}
