import type { OpenAPIHono } from '@hono/zod-openapi';
import type pg from 'pg';
import type { Logger } from 'pino';
import { localSchema, MATERIALIZATION_NAME, MaterializationSpec, shadowOf } from '../../materialize/spec.ts';
import { readCatalog } from '../../store/mat-catalog.repo.ts';
import { countRows } from '../../store/mat-ddl.ts';
import { dirtyDayCount } from '../../store/mat-upsert.repo.ts';
import {
  deleteMaterialization,
  getMaterialization,
  listMaterializations,
  type MaterializationRow,
  pendingOf,
  putMaterialization,
  requestRebuild,
} from '../../store/materializations.repo.ts';
import { bodyKind, parseJson, readBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { ApiError, withDb } from '../errors.ts';
import { requestLogger } from '../middleware/request-context.ts';
import {
  deleteMaterializationRoute,
  getMaterializationRoute,
  listMaterializationsRoute,
  type MaterializationView,
  putMaterialization as putRoute,
  rebuildMaterializationRoute,
} from './materializations.schema.ts';

export interface MaterializationRoutesDeps {
  pool: pg.Pool;
  logger: Logger;
}

const BODY_LIMIT = 64 * 1024;
const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** The materialisation as the API shows it: configuration, state, lag, rows per table, catalog. */
async function viewOf(pool: pg.Pool, row: MaterializationRow): Promise<MaterializationView> {
  const spec = MaterializationSpec.parse(row.spec);
  const schema = localSchema(spec);
  const position = row.cursorXid === null ? null : { xid: row.cursorXid, seq: row.cursorSeq };
  const [catalog, tables, lag, staleDays] = await Promise.all([
    readCatalog(pool, row.name),
    schema ? countRows(pool, schema) : Promise.resolve({}),
    position ? pendingOf(pool, position) : Promise.resolve({ pending: 0, lagS: 0 }),
    dirtyDayCount(pool, row.name),
  ]);
  return {
    name: row.name,
    spec,
    state: row.state as MaterializationView['state'],
    position,
    lag: { pending: lag.pending, seconds: Math.round(lag.lagS * 1000) / 1000, staleDays },
    eventsApplied: row.eventsApplied,
    appliedUntil: iso(row.appliedUntil),
    lastBatchAt: iso(row.lastBatchAt),
    lastRebuildAt: iso(row.lastRebuildAt),
    rebuildRequestedAt: iso(row.rebuildRequestedAt),
    lastError: row.lastError,
    lastErrorAt: iso(row.lastErrorAt),
    failures: row.failures,
    runningOn: row.runningOn,
    tables,
    eventTables: Object.fromEntries(catalog.eventTables),
    columns: catalog.columns.map((c) => ({
      table: c.table,
      column: c.column,
      path: [...c.path],
      type: c.kind,
      wanted: c.wanted,
      conflicts: c.conflicts,
      conflictSample: c.conflictSample,
    })),
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

/** `/v1/admin/materializations*`. The `admin` scope is checked by `adminRoutes`. */
export function registerMaterializationRoutes(
  app: OpenAPIHono<AppEnv>,
  deps: MaterializationRoutesDeps,
): void {
  const { pool } = deps;
  const found = async (name: string): Promise<MaterializationRow> => {
    const row = MATERIALIZATION_NAME.test(name)
      ? await withDb(() => getMaterialization(pool, name))
      : undefined;
    if (!row) throw new ApiError('not_found', 404, 'no materialization with this name');
    return row;
  };

  app.openapi(putRoute, async (c) => {
    const { name } = c.req.valid('param');
    if (!MATERIALIZATION_NAME.test(name)) {
      throw new ApiError('invalid_request', 400, 'invalid materialization name', {
        details: [{ path: 'name', code: 'invalid_format', message: `must match ${MATERIALIZATION_NAME}` }],
      });
    }
    bodyKind(c, ['json']);
    const spec = MaterializationSpec.parse(parseJson(await readBody(c, BODY_LIMIT)));
    const schema = localSchema(spec);
    if (schema === null) {
      throw new ApiError(
        'unsupported_destination',
        400,
        `this version builds materializations in a schema of the service's own database only (destination ${spec.destination.kind}${spec.destination.kind === 'postgres' ? ' with a connection' : ''})`,
        {
          details: [
            {
              path: 'destination',
              code: 'unsupported_destination',
              message: 'use {"kind":"postgres","schema":…}',
            },
          ],
        },
      );
    }
    const others = await withDb(() => listMaterializations(pool));
    const taken = others.find(
      (m) => m.name !== name && localSchema(MaterializationSpec.parse(m.spec)) === schema,
    );
    if (taken)
      throw new ApiError(
        'schema_in_use',
        409,
        `materialization "${taken.name}" builds in schema "${schema}"`,
      );
    const created = await withDb(() => putMaterialization(pool, name, spec));
    requestLogger(c, deps.logger).info({ materialization: name, created }, 'materialization saved');
    const row = await found(name);
    return c.json(await withDb(() => viewOf(pool, row)), created ? 201 : 200);
  });

  app.openapi(listMaterializationsRoute, async (c) => {
    const rows = await withDb(() => listMaterializations(pool));
    const materializations = await withDb(() => Promise.all(rows.map((r) => viewOf(pool, r))));
    return c.json({ materializations }, 200);
  });

  app.openapi(getMaterializationRoute, async (c) => {
    const row = await found(c.req.valid('param').name);
    return c.json(await withDb(() => viewOf(pool, row)), 200);
  });

  app.openapi(rebuildMaterializationRoute, async (c) => {
    const { name } = c.req.valid('param');
    await found(name);
    await withDb(() => requestRebuild(pool, name));
    requestLogger(c, deps.logger).info({ materialization: name }, 'materialization rebuild requested');
    return c.json(await withDb(async () => viewOf(pool, await found(name))), 202);
  });

  app.openapi(deleteMaterializationRoute, async (c) => {
    const { name } = c.req.valid('param');
    const row = await found(name);
    const schema = localSchema(MaterializationSpec.parse(row.spec));
    const schemas = schema ? [schema, shadowOf(schema)] : [];
    if (!(await withDb(() => deleteMaterialization(pool, name, schemas)))) {
      throw new ApiError('not_found', 404, 'no materialization with this name');
    }
    requestLogger(c, deps.logger).info({ materialization: name }, 'materialization deleted');
    return c.body(null, 204);
  });
}
