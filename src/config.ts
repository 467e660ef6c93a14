import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { crossFieldProblem } from './config/cross-checks.ts';
import { bool, commaList, hostPortList, int, isCron, retentionOverrides, url } from './config/parsers.ts';

const DAY_S = 86_400;

const schema = z.object({
  /** HTTP port of the API. */
  PORT: int(8080, 0, 65_535),
  /** `work` serves /metrics and /health/live on this port; unset: no listener; 0: a free port (logged). */
  METRICS_PORT: z.coerce.number().int().min(0).max(65_535).optional(),
  /** API processes `serve` runs on this host, sharing PORT (Node cluster). */
  API_PROCESSES: int(1, 1, 64),
  /** Interface the API binds to. */
  HOST: z.string().min(1).default('0.0.0.0'),
  /** pino level. */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  /** Redis holding the buffer streams. */
  REDIS_URL: url('redis://127.0.0.1:6379', ['redis:', 'rediss:']),
  /**
   * Redis Cluster seed nodes, `host:port,host:port`; when set, a cluster client is used
   * instead of REDIS_URL (every stream key carries its partition's hash tag).
   */
  REDIS_CLUSTER_NODES: hostPortList().optional(),
  /** Every Redis key starts with this, so runs and tenants can share one server. */
  REDIS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_:.-]{1,64}$/, 'must be 1–64 of [A-Za-z0-9_:.-]')
    .default('tributary'),
  /** With N > 0, a 202 also waits until N replicas have the write (Redis WAIT). */
  REDIS_WAIT_REPLICAS: int(0, 0, 16),
  /** How long WAIT may take before the request fails with 503. */
  REDIS_WAIT_TIMEOUT_MS: int(1_000, 1, 60_000),

  /** PostgreSQL; the database is created by `tributary migrate` when absent. */
  DATABASE_URL: url('postgres://postgres@127.0.0.1:5432/tributary', ['postgres:', 'postgresql:']),
  /**
   * Direct PostgreSQL connection for `migrate` (and the migration step of `all`) when
   * DATABASE_URL goes through PgBouncer in transaction mode: migrations hold a session lock.
   */
  DATABASE_MIGRATION_URL: z
    .string()
    .refine((v) => /^postgres(ql)?:\/\//.test(v), 'must be a postgres: or postgresql: URL')
    .optional(),
  /** Connections per process. */
  DATABASE_POOL_SIZE: int(10, 1, 1_000),
  /**
   * A read replica for reads (`GET /v1/events`, exports, `/health/business`); writes,
   * migrations, erasure and retention always use DATABASE_URL. Unset: everything on the primary.
   */
  DATABASE_READ_URL: z
    .string()
    .refine((v) => /^postgres(ql)?:\/\//.test(v), 'must be a postgres: or postgresql: URL')
    .optional(),
  /** Reads go to the primary while the replica's replay is further behind than this (or it is unreachable). */
  READ_MAX_LAG_S: z.coerce.number().gt(0).max(86_400).default(30),
  /** How often the replica's reachability and lag are checked. */
  READ_LAG_CHECK_MS: int(5_000, 100, 600_000),

  /** Bootstrap key with every scope; unset to allow only stored keys. */
  ADMIN_API_KEY: z.string().min(16, 'must be at least 16 characters').optional(),

  /** Number of buffer streams (partitions). Changing it needs an empty buffer. */
  STREAM_PARTITIONS: int(8, 1, 1_024),
  /** How long accepted ids are remembered to answer retries with "duplicate". */
  DEDUPE_WINDOW_S: int(DAY_S, 0, 30 * DAY_S),
  /** Backpressure: ingest answers 429 above this many unpersisted events. */
  BUFFER_MAX_EVENTS: int(1_000_000, 1),
  /** Backpressure: ingest answers 429 above this share of Redis maxmemory (when maxmemory is set). */
  BUFFER_MAX_MEMORY_RATIO: z.coerce.number().gt(0).max(1).default(0.9),
  /** Largest request body, before and after gzip decompression. */
  MAX_BODY_BYTES: int(1_048_576, 1_024, 64 * 1_048_576),
  /** Time a client has to send its request headers. */
  HEADERS_TIMEOUT_MS: int(10_000, 100),
  /** Time a client has to send a whole request. */
  REQUEST_TIMEOUT_MS: int(30_000, 100),
  /** Idle keep-alive connections are closed after this. */
  KEEP_ALIVE_TIMEOUT_MS: int(5_000, 100),

  /** Rows per insert statement. */
  BATCH_SIZE: int(1_000, 1, 50_000),
  /** Batches a worker stores at the same time, each on its own connection; the next is read meanwhile. */
  INSERT_CONCURRENCY: int(4, 1, 16),
  /** A partial batch is written after this long. */
  BATCH_MAX_WAIT_MS: int(200, 0, 60_000),
  /** Longest a worker blocks on XREADGROUP, so reconnects and shutdown are never stuck. */
  READ_BLOCK_MS: int(1_000, 10, 60_000),
  /** Pending entries idle this long are reclaimed from a dead worker. */
  CLAIM_IDLE_MS: int(30_000, 100),
  /** Deliveries after which an entry goes to the dead-letter stream. */
  MAX_DELIVERIES: int(5, 1, 1_000),

  /** Consecutive availability failures of PostgreSQL that open the circuit breaker. */
  BREAKER_FAILURE_THRESHOLD: int(5, 1, 1_000),
  /** First pause before an open breaker lets a probe through; doubles after each failed probe. */
  BREAKER_HALF_OPEN_AFTER_MS: int(1_000, 10, 600_000),
  /** Longest pause between probes of an open breaker. */
  BREAKER_MAX_HALF_OPEN_AFTER_MS: int(30_000, 10, 3_600_000),
  /** An insert still running after this long counts as slow (the breaker's second trigger). */
  BREAKER_SLOW_INSERT_MS: int(2_000, 10, 600_000),
  /** Consecutive slow inserts that open the breaker (one, by default: a 2 s insert is no accident). */
  BREAKER_SLOW_INSERTS: int(1, 1, 1_000),
  /** The breaker opens when more than this share of database calls fail within BREAKER_ERROR_WINDOW_MS (third trigger). */
  BREAKER_ERROR_RATE: z.coerce.number().gt(0).lt(1).default(0.1),
  /** The window of BREAKER_ERROR_RATE; at least 10 calls in it are needed to open on the rate. */
  BREAKER_ERROR_WINDOW_MS: int(30_000, 1_000, 3_600_000),
  /** The worker's disk checkpoint (one directory per worker; put it on a persistent volume). */
  CHECKPOINT_DIR: z.string().min(1).default('.data/checkpoint'),
  /**
   * While the breaker is open and more than this many events wait in Redis, workers move
   * batches to the disk checkpoint (and acknowledge them), so the buffer never fills.
   * Default: a tenth of BUFFER_MAX_EVENTS.
   */
  CHECKPOINT_SPILL_THRESHOLD: z.coerce.number().int().min(0).optional(),
  /** Readiness and health turn `degraded` when the checkpoint's volume has fewer free bytes than this. */
  CHECKPOINT_MIN_FREE_BYTES: int(1_073_741_824, 0),
  /** A checkpoint segment file is closed and a new one started at this size. */
  CHECKPOINT_SEGMENT_BYTES: int(64 * 1_048_576, 4_096, 1_073_741_824),

  /** Default retention; also bounds how old an accepted timestamp may be. */
  RETENTION_DAYS: int(30, 1, 36_500),
  /** Per-service retention overrides, e.g. `audit=365,metrics=365`. */
  RETENTION_BY_SERVICE: retentionOverrides,

  /** When passes run inside `work`/`all`: a cron expression (UTC; `@daily`, `0 3 * * *`) or `off`. */
  RETENTION_SCHEDULE: z
    .string()
    .trim()
    .default('@daily')
    .refine(
      (v) => v === 'off' || isCron(v),
      'must be a cron expression (e.g. "0 3 * * *" or "@daily") or "off"',
    ),
  /** A pass whose runner has not reported progress for this long is taken over by the next one. */
  RETENTION_LOCK_TTL_MS: int(60_000, 1_000, 3_600_000),
  /** Restored rows stay in PostgreSQL this long before the pass removes them again. */
  RESTORE_HOLD_DAYS: int(7, 0, 3_650),
  /** Rows deleted or anonymised per statement. */
  RETENTION_BATCH_ROWS: int(10_000, 100, 1_000_000),
  /** Scratch space for archive files being written, verified or restored (needs room for one month of one service). */
  ARCHIVE_WORK_DIR: z.string().min(1).default(join(tmpdir(), 'tributary-archive')),
  /** Archive objects go here when no bucket is set (the quick-start default). */
  ARCHIVE_DIR: z.string().min(1).default('.data/archive'),
  /** S3-compatible endpoint (MinIO, Ceph, R2…); unset for AWS S3. */
  ARCHIVE_S3_ENDPOINT: z
    .string()
    .refine((v) => /^https?:\/\/[^/]/.test(v), 'must be an http or https URL')
    .optional(),
  /** Bucket for archive objects; when set, S3 is used instead of ARCHIVE_DIR. */
  ARCHIVE_S3_BUCKET: z.string().min(3).max(63).optional(),
  ARCHIVE_S3_REGION: z.string().min(1).default('us-east-1'),
  /** Credentials; unset to use the AWS SDK's default chain (instance role, ~/.aws, AWS_* variables). */
  ARCHIVE_S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  ARCHIVE_S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  /** Path-style URLs (bucket in the path), as MinIO and most S3-compatible servers want. */
  ARCHIVE_S3_FORCE_PATH_STYLE: bool(true),
  /** `when_supported`: SHA-256 checksums on every upload; `when_required` for servers that reject them. */
  ARCHIVE_S3_CHECKSUMS: z.enum(['when_supported', 'when_required']).default('when_supported'),
  /** Rows older than this many days get user_id pseudonymised and PII metadata removed; unset: never. */
  ANONYMIZE_AFTER_DAYS: z.coerce.number().int().min(1).max(36_500).optional(),
  /** HMAC-SHA256 key for pseudonymised user ids; required with ANONYMIZE_AFTER_DAYS. Keep it: erasure needs it. */
  ANONYMIZE_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  /** Top-level metadata keys removed by anonymisation. */
  PII_METADATA_KEYS: commaList('email,ip,phone,name'),

  /** An erasure job whose runner stopped reporting progress this long ago is taken over by another process. */
  DSAR_LOCK_TTL_MS: int(60_000, 1_000, 3_600_000),
  /** Events per minute for stored keys that have no limit of their own; unset: unlimited. */
  DEFAULT_KEY_RATE_LIMIT: z.coerce.number().int().min(1).max(100_000_000).optional(),
  /** The former name of DEFAULT_KEY_RATE_LIMIT, still read. */
  DEFAULT_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).max(100_000_000).optional(),
  /**
   * The largest share of BUFFER_MAX_EVENTS one key's unpersisted events may hold; over it,
   * that key alone gets 429 backpressure. Unset: no per-key share.
   */
  BUFFER_MAX_SHARE_PER_KEY: z.coerce.number().gt(0).max(1).optional(),
  /** How long a rotated key keeps working beside its replacement, by default. */
  KEY_ROTATION_OVERLAP_S: int(86_400, 0, 90 * DAY_S),
  /** TLS for the API port: both files (PEM) or neither. */
  TLS_CERT_FILE: z.string().min(1).optional(),
  TLS_KEY_FILE: z.string().min(1).optional(),
  /** When set, /metrics and the admin routes are served on this port only (bind it privately). */
  ADMIN_PORT: z.coerce.number().int().min(0).max(65_535).optional(),
  /** Take the client address from X-Forwarded-For (behind a trusted load balancer). */
  TRUST_PROXY: bool(false),
  /**
   * Browser origins (`https://shop.example`, comma-separated; `*` for any) that may call the
   * ingest routes (`/v1/events`, `/v1/events/batch`, the Segment routes, `/v1/events/validate`) with CORS; never
   * with credentials. Unset: no CORS headers at all.
   */
  CORS_ORIGINS: commaList('').pipe(
    z.array(
      z
        .string()
        .regex(/^(\*|https?:\/\/[^/\s,]+)$/, 'each must be * or an origin: scheme://host[:port], no path'),
    ),
  ),
  /**
   * Failed authentications allowed per minute from one client address (the audit log's,
   * see TRUST_PROXY) before its further attempts get 429 `auth_throttled`; 0: no throttle.
   */
  AUTH_FAILURES_PER_MINUTE: int(30, 0, 1_000_000),
  /** Top-level metadata keys stored encrypted (AES-256-GCM), e.g. `email,phone`. */
  ENCRYPT_METADATA_KEYS: commaList(''),
  /**
   * Encryption keys as `id:base64-of-32-bytes`, comma-separated; the first encrypts, all
   * decrypt (rotation). Required with ENCRYPT_METADATA_KEYS.
   */
  METADATA_ENCRYPTION_KEYS: z.string().min(1).optional(),

  /**
   * The live view (`GET /v1/events/live`): outcome frames each listener gets per second at
   * most; above it they are sampled, at a stated rate. 0 turns the live view off entirely
   * (the route answers 404 `live_disabled` and ingest publishes nothing).
   */
  LIVE_MAX_EVENTS_PER_S: int(50, 0, 10_000),
  /** The live view sends a `: ping` comment this often, so proxies keep the connection open. */
  LIVE_HEARTBEAT_S: int(15, 1, 3_600),
  /**
   * Flushes (entries of up to 500 records or 128 KiB each) the live stream keeps for resuming
   * with Last-Event-ID; older ones are trimmed. Also bounds its Redis memory.
   */
  LIVE_RETAIN_ENTRIES: int(1_000, 10, 1_000_000),
  /**
   * Every API process reloads the tracking plans this often, in case it missed a change
   * announced over Redis pub/sub (which applies within milliseconds).
   */
  PLANS_RELOAD_S: int(30, 1, 3_600),

  /** Whether this `work` process runs materialisations (§17); at most one process runs each (a lease). */
  MATERIALIZE_RUNNERS: int(1, 0, 1),
  /** A materialisation's lease; a runner silent this long (crashed, stalled) is taken over. */
  MATERIALIZE_LEASE_TTL_S: int(30, 2, 600),
  /** How often a caught-up materialisation looks at the feed again. */
  MATERIALIZE_POLL_MS: int(500, 20, 60_000),
  /** Feed rows applied per batch (one transaction). */
  MATERIALIZE_BATCH_ROWS: int(5_000, 1, 100_000),

  /** Sources (§15) one `work` process runs at once; 0: this process runs none. */
  SOURCE_RUNNERS: int(4, 0, 64),
  /** A runner's lease on its source; a runner silent this long (crashed, stalled) is taken over. */
  SOURCE_LEASE_TTL_S: int(15, 2, 600),
  /** How often a `work` process looks for sources that are due. */
  SOURCE_POLL_MS: int(1_000, 50, 60_000),
  /** One request of an HTTP API source, headers and body, may take this long (then it is retried). */
  SOURCE_HTTP_TIMEOUT_MS: int(30_000, 100, 600_000),
  /** A response of an HTTP API source over this many bytes is refused. */
  SOURCE_HTTP_MAX_BYTES: int(16 * 1024 * 1024, 1_024, 1024 * 1024 * 1024),
  /** A `429` whose Retry-After is up to this is waited out in the run; a longer one ends the run until then. */
  SOURCE_MAX_RETRY_AFTER_S: int(300, 0, 86_400),

  /** Longest a graceful shutdown may take before the process exits anyway. */
  SHUTDOWN_TIMEOUT_MS: int(30_000, 100),
});

export type Config = Omit<z.infer<typeof schema>, 'CHECKPOINT_SPILL_THRESHOLD'> & {
  CHECKPOINT_SPILL_THRESHOLD: number;
};

/** Raised for a bad environment; the message names every offending variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * Parses and validates the environment. Empty strings count as unset, so
 * `FOO=` in a compose file falls back to the default.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const cleaned: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') cleaned[key] = value;
  }
  const parsed = schema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const config: Config = {
    ...parsed.data,
    CHECKPOINT_SPILL_THRESHOLD:
      parsed.data.CHECKPOINT_SPILL_THRESHOLD ?? Math.floor(parsed.data.BUFFER_MAX_EVENTS / 10),
  };
  const problem = crossFieldProblem(config);
  if (problem) throw new ConfigError(`invalid configuration:\n  ${problem}`);
  return config;
}

/** Longest retention of any service: how far back a timestamp is accepted and partitions reach. */
export function maxRetentionDays(config: Pick<Config, 'RETENTION_DAYS' | 'RETENTION_BY_SERVICE'>): number {
  return Math.max(config.RETENTION_DAYS, ...Object.values(config.RETENTION_BY_SERVICE));
}
