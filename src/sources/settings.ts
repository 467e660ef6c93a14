import { z } from 'zod';
import { eventShape } from '../events/event.schema.ts';

/**
 * What a source is made of (ARCHITECTURE §15): one zod schema per kind, used by the admin
 * API to refuse a bad configuration with the field named, and by the runners to read a
 * stored one. Secrets (`connection`, `auth`, `secret`) are split off before storing
 * ({@link splitSecrets}) and sealed; every other field is plain settings.
 */

/** A dotted path into a record (`data.items`, `customer.id`); `''` is the record itself where allowed. */
const FieldPath = z
  .string()
  .max(256)
  .regex(/^[^.\s]+(\.[^.\s]+)*$/, 'must be a dotted path such as "customer.id"');
/** A column name as the source table spells it (quoted when read, so any name works). */
const Column = z.string().min(1).max(63);
const Name = z.string().trim().min(1).max(128);
const Interval = z.number().int().min(1).max(86_400);
const FixedType = eventShape.shape.type;
const HttpUrl = z.url({ protocol: /^https?$/, message: 'must be an http: or https: URL' }).max(2_048);

const common = {
  name: Name,
  service: eventShape.shape.service,
  paused: z.boolean().optional(),
};

/** `typeColumn` | `type`, `typeField` | `type`: exactly one names the event type. */
const oneType =
  (field: 'typeColumn' | 'typeField') =>
  (v: Record<string, unknown>, ctx: z.RefinementCtx): void => {
    const both = v[field] !== undefined && v.type !== undefined;
    if (both || (v[field] === undefined && v.type === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [v[field] === undefined ? 'type' : field],
        message: `give exactly one of ${field} (read from each record) and type (the same for every event)`,
      });
    }
  };

export const PostgresSource = z
  .strictObject({
    kind: z.literal('postgres'),
    ...common,
    connection: z
      .string()
      .max(2_048)
      .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL'),
    table: z
      .string()
      .max(127)
      .regex(
        /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/,
        'must be a table name, optionally schema-qualified (schema.table)',
      ),
    cursorColumn: Column,
    idColumn: Column,
    typeColumn: Column.optional(),
    type: FixedType.optional(),
    userIdColumn: Column.optional(),
    /** Absent: the cursor column, which must then be a date or timestamp. */
    timestampColumn: Column.optional(),
    intervalSeconds: Interval.default(60),
    /** The most rows one batch may hold; batches are sized by measurement below it. */
    maxBatchRows: z.number().int().min(1).max(50_000).default(5_000),
  })
  .superRefine(oneType('typeColumn'));

const Pagination = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('cursor'),
    param: z.string().min(1).max(64).default('cursor'),
    nextPath: FieldPath.default('next'),
  }),
  z.strictObject({
    type: z.literal('offset'),
    param: z.string().min(1).max(64).default('offset'),
    limitParam: z.string().min(1).max(64).default('limit'),
    limit: z.number().int().min(1).max(10_000).default(100),
  }),
  z.strictObject({
    type: z.literal('page'),
    param: z.string().min(1).max(64).default('page'),
    sizeParam: z.string().min(1).max(64).default('per_page'),
    size: z.number().int().min(1).max(10_000).default(100),
    /** The number of the first page (1 for most APIs). */
    first: z.number().int().min(0).max(1).default(1),
  }),
  z.strictObject({ type: z.literal('link') }),
]);
export type Pagination = z.infer<typeof Pagination>;

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const Auth = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('bearer'), token: z.string().min(1).max(4_096) }),
  z.strictObject({
    type: z.literal('basic'),
    username: z.string().min(1).max(256),
    password: z.string().max(1_024),
  }),
  z.strictObject({
    type: z.literal('header'),
    name: z.string().regex(HEADER_NAME, 'must be an HTTP header name').max(128),
    value: z.string().min(1).max(4_096),
  }),
]);
export type Auth = z.infer<typeof Auth>;

export const HttpSource = z
  .strictObject({
    kind: z.literal('http'),
    ...common,
    url: HttpUrl,
    /** Where the array of records is in a response; absent: the response is the array. */
    dataPath: FieldPath.optional(),
    pagination: Pagination.optional(),
    auth: Auth.optional(),
    idField: FieldPath,
    typeField: FieldPath.optional(),
    type: FixedType.optional(),
    userIdField: FieldPath.optional(),
    /** When the record happened: it is part of the event's id, so a record read again is the same event. */
    timestampField: FieldPath,
    intervalSeconds: Interval.default(300),
  })
  .superRefine(oneType('typeField'));

export const WebhookSource = z
  .strictObject({
    kind: z.literal('webhook'),
    ...common,
    secret: z.string().min(16, 'must be at least 16 characters').max(1_024),
    signatureHeader: z.string().regex(HEADER_NAME, 'must be an HTTP header name').max(128),
    idField: FieldPath,
    typeField: FieldPath.optional(),
    type: FixedType.optional(),
    userIdField: FieldPath.optional(),
    /** Absent: the time of receipt. */
    timestampField: FieldPath.optional(),
    /** Deliveries per minute this source accepts; absent: DEFAULT_KEY_RATE_LIMIT's value or 600. */
    rateLimitPerMinute: z.number().int().min(1).max(10_000_000).optional(),
  })
  .superRefine(oneType('typeField'));

export const SourceConfig = z.discriminatedUnion('kind', [PostgresSource, HttpSource, WebhookSource]);
export type SourceConfig = z.infer<typeof SourceConfig>;
export type SourceInput = z.input<typeof SourceConfig>;
export type PostgresSourceConfig = z.infer<typeof PostgresSource>;
export type HttpSourceConfig = z.infer<typeof HttpSource>;
export type WebhookSourceConfig = z.infer<typeof WebhookSource>;
export type SourceKind = SourceConfig['kind'];
export const SOURCE_KINDS = ['postgres', 'http', 'webhook'] as const satisfies readonly SourceKind[];

/** The fields of each kind that are secret: stored sealed, never returned, scrubbed from errors. */
export const SECRET_FIELDS = {
  postgres: ['connection'],
  http: ['auth'],
  webhook: ['secret'],
} as const satisfies Record<SourceKind, readonly string[]>;

/** Fields a `PATCH` never changes. */
export const FIXED_FIELDS = ['kind'] as const;

/** A configuration split into what is stored plainly and what is sealed. */
export interface SplitConfig {
  settings: Record<string, unknown>;
  secrets: Record<string, unknown>;
}

export function splitSecrets(config: SourceConfig): SplitConfig {
  const secretNames: readonly string[] = SECRET_FIELDS[config.kind];
  const settings: Record<string, unknown> = {};
  const secrets: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) {
    // Columns of their own.
    if (v === undefined || k === 'kind' || k === 'name' || k === 'service' || k === 'paused') continue;
    (secretNames.includes(k) ? secrets : settings)[k] = v;
  }
  // What kind of credentials an API source presents is shown; the credentials are not.
  if (config.kind === 'http' && config.auth) {
    settings.auth =
      config.auth.type === 'header' ? { type: 'header', name: config.auth.name } : { type: config.auth.type };
  }
  return { settings, secrets };
}

/**
 * The strings an error message must never show: every secret value, and the parts of a
 * connection URL (password, the whole URL) that a driver might echo.
 */
export function secretStrings(secrets: Record<string, unknown>): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === 'string' && v.length >= 4) out.push(v);
    else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
  };
  walk(secrets);
  const connection = secrets.connection;
  if (typeof connection === 'string') {
    try {
      const password = decodeURIComponent(new URL(connection).password);
      if (password.length >= 4) out.push(password, encodeURIComponent(password));
    } catch {
      // Not a URL: the whole string is listed already.
    }
  }
  const auth = secrets.auth as Auth | undefined;
  if (auth?.type === 'basic') {
    out.push(Buffer.from(`${auth.username}:${auth.password}`).toString('base64'));
  }
  return [...new Set(out)].sort((a, b) => b.length - a.length);
}

/** `text` with every secret string replaced by `[secret]`. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join('[secret]');
  return out;
}
