import { createHash } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { z } from 'zod';

/**
 * A materialisation's configuration, as `PUT /v1/admin/materializations/:name` takes it
 * (ARCHITECTURE §17), validated here.
 */

/** A materialisation's name: in URLs, metrics and the catalog. */
export const MATERIALIZATION_NAME = /^[a-z][a-z0-9_-]{0,62}$/;

/** Schemas a materialisation may not take: PostgreSQL's own and the service's. */
const FORBIDDEN_SCHEMAS = new Set(['public', 'information_schema']);

/** A dedicated schema (dropped with the materialisation): room is left for the rebuild's `__rebuild` suffix. */
const SchemaName = z
  .string()
  .regex(/^[a-z_][a-z0-9_]{0,53}$/, 'a schema name of lower-case letters, digits and _ (at most 54)')
  .refine(
    (s) =>
      !FORBIDDEN_SCHEMAS.has(s) &&
      !s.startsWith('pg_') &&
      !s.startsWith('tributary_') &&
      !s.endsWith('__rebuild'),
    { message: 'a schema of its own: not public, information_schema, pg_*, tributary_* or *__rebuild' },
  );

/** A key prefix in the archive store, apart from the archive's own `events/`. */
const ObjectPrefix = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9_.=-]*(\/[a-z0-9][a-z0-9_.=-]*)*\/?$/,
    'a key prefix of lower-case segments ([a-z0-9_.=-]) joined by /',
  )
  .refine((p) => !p.split('/').includes('..') && p.split('/')[0] !== 'events', {
    message: "not under the archive's own events/",
  })
  .transform((p) => (p.endsWith('/') ? p : `${p}/`));

export const Destination = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('postgres'),
    schema: SchemaName.default('mat'),
    connection: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'a postgres:// URL')
      .optional(),
  }),
  z.strictObject({
    kind: z.literal('duckdb'),
    path: z
      .string()
      .min(2)
      .max(4096)
      .refine(isAbsolute, { message: "an absolute path of the DuckDB file on the work processes' host" }),
  }),
  z.strictObject({ kind: z.literal('parquet'), prefix: ObjectPrefix }),
]);
export type Destination = z.infer<typeof Destination>;

export const MaterializationSpec = z.strictObject({
  destination: Destination.default({ kind: 'postgres', schema: 'mat' }),
  /** Only these services' events; absent: every service. */
  services: z.array(z.string().min(1)).min(1).max(100).optional(),
  /** Which track event names get a table: the first `max` seen, or exactly `allow`. */
  eventTables: z
    .union([
      z.strictObject({ max: z.number().int().min(0).max(1000) }),
      z.strictObject({ allow: z.array(z.string().min(1)).max(1000) }),
    ])
    .default({ max: 100 }),
  /** Typed columns per table at most (PostgreSQL allows 1,600 columns; the rest stay in jsonb). */
  promoteMaxColumns: z.number().int().min(0).max(1000).default(200),
});
export type MaterializationSpec = z.infer<typeof MaterializationSpec>;

/** Where a spec's tables live when they are in the service's own database (the default), else null. */
export function localSchema(spec: MaterializationSpec): string | null {
  const d = spec.destination;
  return d.kind === 'postgres' && d.connection === undefined ? d.schema : null;
}

/**
 * The schema a materialisation's tables are built in, in the service's own database: its own
 * schema when that is the destination, else a staging schema of its own, which the
 * destination is then synced from (materialize/sync.ts). The same name is computed in SQL
 * by `BUILD_SCHEMA_SQL` (store/mat-ddl.ts).
 */
export function buildSchema(name: string, spec: MaterializationSpec): string {
  return localSchema(spec) ?? stagingSchema(name);
}

/** The staging schema of a materialisation whose destination is elsewhere. */
export const stagingSchema = (name: string): string =>
  `tributary_stage_${createHash('md5').update(name).digest('hex').slice(0, 10)}`;

/** The shadow schema a rebuild fills before swapping it in. */
export const shadowOf = (schema: string): string => `${schema}__rebuild`;

/** Whether two specs build the same tables (else the tables are rebuilt). */
export function sameTables(a: MaterializationSpec, b: MaterializationSpec): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
