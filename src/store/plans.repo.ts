import type pg from 'pg';
import { inTransaction } from './db.ts';

/*
 * Tracking plans (ARCHITECTURE §14): `event_schemas` holds every version of each
 * (service, type)'s schema, `plan_settings` each service's mode. Hand-written SQL: a PUT
 * numbers its version under a per-type advisory lock, and the registry reads what changed
 * by version without the schema bodies.
 */

export interface PlanSettingsRow {
  service: string;
  mode: string;
  unknownTypes: string;
}

export interface SchemaVersion {
  service: string;
  type: string;
  version: number;
  /** RFC 3339. */
  createdAt: string;
}

export interface StoredSchema extends SchemaVersion {
  schema: Record<string, unknown>;
  /** RFC 3339; set when this version was deleted. */
  deletedAt: string | null;
}

const ISO = `to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
const iso = (column: string) => ISO.replace('%s', column);

/** The current version of every registered type: the latest, unless it was deleted. */
const CURRENT = `
  SELECT DISTINCT ON (service, type) service, type, version, ${iso('created_at')} AS created_at, deleted_at
    FROM event_schemas
   ORDER BY service, type, version DESC`;

/**
 * Serialises writers of one (service, type): version numbers are taken in order. A service
 * name holds no `/`, so `service/type` names one pair.
 */
const lockType = (client: pg.PoolClient, service: string, type: string) =>
  client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 1414))', [`${service}/${type}`]);

/**
 * Stores `schema` as the type's next version, unless it is the current one already (same
 * JSON, key order aside): a plan applied again from version control changes nothing.
 * @returns the current version and whether this call made it.
 */
export async function putSchema(
  pool: pg.Pool,
  input: { service: string; type: string; schema: Record<string, unknown>; keyId: string | null },
): Promise<{ version: number; changed: boolean }> {
  const schemaJson = JSON.stringify(input.schema);
  return inTransaction(pool, async (client) => {
    await lockType(client, input.service, input.type);
    const { rows } = await client.query<{ version: number; same: boolean; deleted: boolean }>(
      `SELECT version, schema = $3::jsonb AS same, deleted_at IS NOT NULL AS deleted FROM event_schemas
        WHERE service = $1 AND type = $2 ORDER BY version DESC LIMIT 1`,
      [input.service, input.type, schemaJson],
    );
    const latest = rows[0];
    if (latest?.same && !latest.deleted) return { version: latest.version, changed: false };
    const version = (latest?.version ?? 0) + 1;
    await client.query(
      `INSERT INTO event_schemas (service, type, version, schema, key_id) VALUES ($1, $2, $3, $4::jsonb, $5)`,
      [input.service, input.type, version, schemaJson, input.keyId],
    );
    return { version, changed: true };
  });
}

/**
 * Deletes the type's current schema (its versions stay, for the record).
 * @returns the version deleted, or undefined when the type has none.
 */
export async function deleteSchema(
  pool: pg.Pool,
  service: string,
  type: string,
): Promise<number | undefined> {
  return inTransaction(pool, async (client) => {
    await lockType(client, service, type);
    const { rows } = await client.query<{ version: number }>(
      `UPDATE event_schemas SET deleted_at = now()
        WHERE (service, type, version) = (
                SELECT service, type, version FROM event_schemas
                 WHERE service = $1 AND type = $2 ORDER BY version DESC LIMIT 1)
          AND deleted_at IS NULL
       RETURNING version`,
      [service, type],
    );
    return rows[0]?.version;
  });
}

/** The current versions of every registered type (of `services` when given), by service then type. */
export async function currentSchemas(pool: pg.Pool, services?: readonly string[]): Promise<SchemaVersion[]> {
  const { rows } = await pool.query<{ service: string; type: string; version: number; created_at: string }>(
    `SELECT service, type, version, created_at FROM (${CURRENT}) c
      WHERE deleted_at IS NULL AND ($1::text[] IS NULL OR service = ANY($1::text[]))
      ORDER BY service, type`,
    [services ?? null],
  );
  return rows.map((r) => ({ service: r.service, type: r.type, version: r.version, createdAt: r.created_at }));
}

/**
 * One version of a type's schema; without `version`, the current one (undefined when the
 * type has none, or its latest was deleted).
 */
export async function getSchema(
  pool: pg.Pool,
  service: string,
  type: string,
  version?: number,
): Promise<StoredSchema | undefined> {
  const { rows } = await pool.query<{
    version: number;
    schema: Record<string, unknown>;
    created_at: string;
    deleted_at: string | null;
  }>(
    `SELECT version, schema, ${iso('created_at')} AS created_at,
            CASE WHEN deleted_at IS NULL THEN NULL ELSE ${iso('deleted_at')} END AS deleted_at
       FROM event_schemas WHERE service = $1 AND type = $2 AND ($3::int IS NULL OR version = $3)
      ORDER BY version DESC LIMIT 1`,
    [service, type, version ?? null],
  );
  const row = rows[0];
  if (!row || (version === undefined && row.deleted_at !== null)) return undefined;
  return {
    service,
    type,
    version: row.version,
    schema: row.schema,
    createdAt: row.created_at,
    deletedAt: row.deleted_at,
  };
}

/** Every version number of a type, newest first, deleted ones included. */
export async function schemaVersions(
  pool: pg.Pool,
  service: string,
  type: string,
): Promise<{ version: number; createdAt: string; deletedAt: string | null }[]> {
  const { rows } = await pool.query<{ version: number; created_at: string; deleted_at: string | null }>(
    `SELECT version, ${iso('created_at')} AS created_at,
            CASE WHEN deleted_at IS NULL THEN NULL ELSE ${iso('deleted_at')} END AS deleted_at
       FROM event_schemas WHERE service = $1 AND type = $2 ORDER BY version DESC`,
    [service, type],
  );
  return rows.map((r) => ({ version: r.version, createdAt: r.created_at, deletedAt: r.deleted_at }));
}

/** The schemas of these (service, type, version)s, for a registry compiling what it has not yet. */
export async function schemaBodies(
  pool: pg.Pool,
  wanted: readonly { service: string; type: string; version: number }[],
): Promise<{ service: string; type: string; version: number; schema: Record<string, unknown> }[]> {
  if (wanted.length === 0) return [];
  const { rows } = await pool.query<{
    service: string;
    type: string;
    version: number;
    schema: Record<string, unknown>;
  }>(
    `SELECT s.service, s.type, s.version, s.schema
       FROM event_schemas s
       JOIN unnest($1::text[], $2::text[], $3::int[]) AS w(service, type, version)
         ON (s.service, s.type, s.version) = (w.service, w.type, w.version)`,
    [wanted.map((w) => w.service), wanted.map((w) => w.type), wanted.map((w) => w.version)],
  );
  return rows;
}

/** Sets a service's settings (the fields given; the others keep their value, or the defaults). */
export async function putPlanSettings(
  pool: pg.Pool,
  service: string,
  change: { mode?: string | undefined; unknownTypes?: string | undefined },
  defaults: { mode: string; unknownTypes: string },
): Promise<PlanSettingsRow> {
  const { rows } = await pool.query<{ service: string; mode: string; unknown_types: string }>(
    `INSERT INTO plan_settings (service, mode, unknown_types) VALUES ($1, coalesce($2, $4), coalesce($3, $5))
     ON CONFLICT (service) DO UPDATE
       SET mode = coalesce($2, plan_settings.mode), unknown_types = coalesce($3, plan_settings.unknown_types),
           updated_at = now()
     RETURNING service, mode, unknown_types`,
    [service, change.mode ?? null, change.unknownTypes ?? null, defaults.mode, defaults.unknownTypes],
  );
  const row = rows[0] as { service: string; mode: string; unknown_types: string };
  return { service: row.service, mode: row.mode, unknownTypes: row.unknown_types };
}

/** Every service's settings (of `services` when given). */
export async function listPlanSettings(
  pool: pg.Pool,
  services?: readonly string[],
): Promise<PlanSettingsRow[]> {
  const { rows } = await pool.query<{ service: string; mode: string; unknown_types: string }>(
    `SELECT service, mode, unknown_types FROM plan_settings
      WHERE $1::text[] IS NULL OR service = ANY($1::text[]) ORDER BY service`,
    [services ?? null],
  );
  return rows.map((r) => ({ service: r.service, mode: r.mode, unknownTypes: r.unknown_types }));
}
