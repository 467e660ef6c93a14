import { tmpdir } from 'node:os';
import type { OpenAPIHono } from '@hono/zod-openapi';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { ObjectStore } from '../../archive/object-store.ts';
import { openDestination } from '../../materialize/destinations.ts';
import {
  buildSchema,
  type Destination,
  localSchema,
  MATERIALIZATION_NAME,
  MaterializationSpec,
  shadowOf,
} from '../../materialize/spec.ts';
import { readCatalog } from '../../store/mat-catalog.repo.ts';
import { unsyncedChanges } from '../../store/mat-changes.repo.ts';
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
import { errorSummary } from '../../telemetry/log-errors.ts';
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
  RebuildRequest,
  rebuildMaterializationRoute,
} from './materializations.schema.ts';

export interface MaterializationRoutesDeps {
  pool: pg.Pool;
  logger: Logger;
  /** The archive store, where Parquet destinations are. */
  store?: ObjectStore;
}

/** Whether two destinations would write over each other (the same schema, file, or nested prefixes). */
function sharesDestination(a: Destination, b: Destination): boolean {
  if (a.kind === 'postgres' && b.kind === 'postgres')
    return a.schema === b.schema && (a.connection ?? '') === (b.connection ?? '');
  if (a.kind === 'duckdb' && b.kind === 'duckdb') return a.path === b.path;
  if (a.kind === 'parquet' && b.kind === 'parquet')
    return a.prefix.startsWith(b.prefix) || b.prefix.startsWith(a.prefix);
  return false;
}

function describe(d: Destination): string {
  if (d.kind === 'postgres') return `schema ${d.schema}${d.connection ? ' of another database' : ''}`;
  return d.kind === 'duckdb' ? `file ${d.path}` : `prefix ${d.prefix}`;
}

const BODY_LIMIT = 64 * 1024;
const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** The materialisation as the API shows it: configuration, state, lag, rows per table, catalog. */
async function viewOf(pool: pg.Pool, row: MaterializationRow): Promise<MaterializationView> {
  const spec = MaterializationSpec.parse(row.spec);
  const schema = buildSchema(row.name, spec);
  const position = row.cursorXid === null ? null : { xid: row.cursorXid, seq: row.cursorSeq };
  const [catalog, tables, lag, staleDays, unsynced] = await Promise.all([
    readCatalog(pool, row.name),
    countRows(pool, schema),
    position ? pendingOf(pool, position) : Promise.resolve({ pending: 0, lagS: 0 }),
    dirtyDayCount(pool, row.name),
    localSchema(spec) === null ? unsyncedChanges(pool, schema) : Promise.resolve(0),
  ]);
  return {
    name: row.name,
    spec,
    state: row.state as MaterializationView['state'],
    position,
    lag: { pending: lag.pending, seconds: Math.round(lag.lagS * 1000) / 1000, staleDays, unsynced },
    eventsApplied: row.eventsApplied,
    appliedUntil: iso(row.appliedUntil),
    lastBatchAt: iso(row.lastBatchAt),
    lastRebuildAt: iso(row.lastRebuildAt),
    lastRebuildArchivedFrom: row.lastRebuildArchivedFrom,
    rebuildRequestedAt: iso(row.rebuildRequestedAt),
    rebuildArchivedFrom: row.rebuildRequestedAt === null ? null : row.rebuildArchivedFrom,
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
    const others = await withDb(() => listMaterializations(pool));
    const taken = others.find(
      (m) =>
        m.name !== name && sharesDestination(MaterializationSpec.parse(m.spec).destination, spec.destination),
    );
    if (taken)
      throw new ApiError(
        'destination_in_use',
        409,
        `materialization "${taken.name}" writes to the same destination (${describe(spec.destination)})`,
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
    // The body is optional: no body (or `{}`) rebuilds from the stored events only.
    const raw = (await readBody(c, BODY_LIMIT)).trim();
    if (raw !== '') bodyKind(c, ['json']);
    const { archivedFrom = null } = RebuildRequest.parse(raw === '' ? {} : parseJson(raw));
    await found(name);
    await withDb(() => requestRebuild(pool, name, archivedFrom));
    requestLogger(c, deps.logger).info(
      { materialization: name, archivedFrom },
      'materialization rebuild requested',
    );
    return c.json(await withDb(async () => viewOf(pool, await found(name))), 202);
  });

  app.openapi(deleteMaterializationRoute, async (c) => {
    const { name } = c.req.valid('param');
    const row = await found(name);
    const spec = MaterializationSpec.parse(row.spec);
    const schema = buildSchema(name, spec);
    if (!(await withDb(() => deleteMaterialization(pool, name, [schema, shadowOf(schema)])))) {
      throw new ApiError('not_found', 404, 'no materialization with this name');
    }
    if (localSchema(spec) === null) {
      // What the syncs wrote elsewhere goes too; the materialisation is gone either way.
      const destination = openDestination(spec.destination, { store: deps.store, workDir: tmpdir() });
      await destination
        .drop()
        .catch((err: unknown) =>
          requestLogger(c, deps.logger).warn(
            { materialization: name, destination: destination.location, err: errorSummary(err) },
            'materialization deleted; its destination could not be emptied',
          ),
        );
    }
    requestLogger(c, deps.logger).info({ materialization: name }, 'materialization deleted');
    return c.body(null, 204);
  });
}
