import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { ObjectNotFoundError, type ObjectStore } from '../archive/object-store.ts';
import type { TableShape } from '../store/mat-changes.repo.ts';
import { castColumns, csvColumnsOf, readCsv } from './dest-duckdb.ts';
import {
  type Destination,
  DestinationMovedError,
  type DestinationState,
  duckType,
  type Sync,
  stillAt,
} from './destination.ts';

/**
 * A materialisation's tables as Parquet objects in the archive store, in a Hive layout
 * (ARCHITECTURE §17): `<prefix><table>/service=<s>/day=<d>/part-<sync>.parquet` for the
 * per-event tables, `…/service=<s>/bucket=<h>/…` for `users`, `accounts` and
 * `identity_links`, `…/service=<s>/…` for `daily_counts`. One object per partition; a sync
 * writes the partitions its changes fall in again, under new names, then the manifest
 * (`<prefix>_manifest.json`: the objects of every table, their rows, bytes and SHA-256, and
 * the position), last, then deletes the objects it replaced. A reader who goes by the
 * manifest sees one whole sync or the one before; objects of a sync cut off before its
 * manifest are deleted by the next. DuckDB's SQL, run in process on files.
 */

export interface ParquetManifest {
  format: 'tributary-materialization';
  version: 1;
  generation: string;
  position: { xid: string; seq: number };
  syncedAt: string;
  tables: Record<
    string,
    {
      columns: { name: string; type: string }[];
      objects: { key: string; partition: string; rows: number; bytes: number; sha256: string }[];
    }
  >;
}

const lit = (text: string) => `'${text.replaceAll("'", "''")}'`;

/** The object key of a partition (`["service","day=…"]`) written by sync `syncId`. */
function objectKey(prefix: string, table: string, partition: string, syncId: string): string {
  const [service, part] = JSON.parse(partition) as [string, string];
  const dirs = [`service=${encodeURIComponent(service)}`, ...(part ? [part] : [])];
  return `${prefix}${table}/${dirs.join('/')}/part-${syncId}.parquet`;
}

export class ParquetDestination implements Destination {
  readonly granularity = 'partitions';
  readonly location: string;
  readonly #store: ObjectStore;
  readonly #prefix: string;
  readonly #workDir: string;
  /** Objects under the prefix not in the manifest are swept once per process (a sync cut off). */
  #swept = false;

  constructor(store: ObjectStore, prefix: string, workDir: string) {
    this.#store = store;
    this.#prefix = prefix;
    this.#workDir = workDir;
    this.location = `${store.location}/${prefix}`;
  }

  get manifestKey(): string {
    return `${this.#prefix}_manifest.json`;
  }

  async manifest(): Promise<ParquetManifest | null> {
    try {
      return JSON.parse(Buffer.from(await this.#store.getBytes(this.manifestKey)).toString('utf8'));
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return null;
      throw err;
    }
  }

  async state(): Promise<DestinationState | null> {
    const m = await this.manifest();
    return m ? { generation: m.generation, position: m.position } : null;
  }

  async apply(sync: Sync): Promise<void> {
    const held = await this.manifest();
    const stateOf = (m: ParquetManifest | null) =>
      m ? { generation: m.generation, position: m.position } : null;
    if (!stillAt(stateOf(held), sync.expected))
      throw new DestinationMovedError(`${this.location} moved on since the sync began`);
    const before = sync.full ? null : held;
    const next: ParquetManifest = {
      format: 'tributary-materialization',
      version: 1,
      generation: sync.generation,
      position: sync.position,
      syncedAt: new Date().toISOString(),
      tables: structuredClone(before?.tables ?? {}),
    };
    for (const shape of sync.shapes) {
      const entry = next.tables[shape.table] ?? { columns: [], objects: [] };
      entry.columns = shape.columns.map((c) => ({ name: c.name, type: duckType(c.type).type }));
      next.tables[shape.table] = entry;
    }
    for (const table of Object.keys(next.tables)) {
      if (!sync.shapes.some((s) => s.table === table)) delete next.tables[table];
    }
    await mkdir(this.#workDir, { recursive: true });
    const dir = await mkdtemp(join(this.#workDir, 'parquet-'));
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(':memory:', { threads: '2', temp_directory: dir });
    const conn = await db.connect();
    const syncId = `${Date.now().toString(36)}-${randomUUID().slice(0, 8)}`;
    try {
      await conn.run("SET TimeZone = 'UTC'");
      for (const t of sync.tables) {
        const entry = next.tables[t.shape.table];
        if (!entry) continue;
        const written = await this.#writeTable(conn, t.shape, t.rowsCsv, dir, syncId);
        const rewritten = new Set(sync.full ? written.map((o) => o.partition) : (t.partitions ?? []));
        for (const o of written) rewritten.add(o.partition);
        entry.objects = [...entry.objects.filter((o) => !rewritten.has(o.partition)), ...written].sort(
          (a, b) => (a.key < b.key ? -1 : 1),
        );
      }
    } finally {
      conn.closeSync();
      db.closeSync();
      await rm(dir, { recursive: true, force: true });
    }
    // Object stores have no transaction: the manifest is read again just before it is replaced
    // (a sync of another process whose lease ran out would have moved it).
    if (!stillAt(stateOf(await this.manifest()), sync.expected)) {
      const mine = sync.tables.flatMap((t) => next.tables[t.shape.table]?.objects ?? []);
      for (const o of mine) if (o.key.includes(`part-${syncId}.`)) await this.#store.delete(o.key);
      throw new DestinationMovedError(`${this.location} moved on since the sync began`);
    }
    const body = Buffer.from(`${JSON.stringify(next, null, 2)}\n`);
    await this.#store.putBytes(this.manifestKey, body, 'application/json');
    const live = new Set(Object.values(next.tables).flatMap((t) => t.objects.map((o) => o.key)));
    const replaced = Object.values(before?.tables ?? {}).flatMap((t) => t.objects.map((o) => o.key));
    const stale =
      sync.full || !this.#swept
        ? (await this.#store.list(this.#prefix)).filter((k) => k.endsWith('.parquet'))
        : replaced;
    this.#swept = true;
    for (const key of stale) if (!live.has(key)) await this.#store.delete(key);
  }

  /** One object per partition in the CSV (its partition is the last column). */
  async #writeTable(
    conn: DuckDBConnection,
    shape: TableShape,
    csv: string,
    dir: string,
    syncId: string,
  ): Promise<ParquetManifest['tables'][string]['objects']> {
    const columns = [...csvColumnsOf(shape), { name: '_partition', csv: 'VARCHAR' }];
    await conn.run(
      `CREATE OR REPLACE TEMP TABLE sync_rows AS SELECT ${castColumns(shape)}, _partition FROM ${readCsv(csv, columns)}`,
    );
    const parts = await conn.runAndReadAll(
      'SELECT _partition, count(*)::INTEGER AS n FROM sync_rows GROUP BY 1 ORDER BY 1',
    );
    const out: ParquetManifest['tables'][string]['objects'] = [];
    const names = shape.columns.map((c) => `"${c.name.replaceAll('"', '""')}"`).join(', ');
    for (const [i, [partition, rows]] of (parts.getRows() as [string, number][]).entries()) {
      const file = join(dir, `${i}.parquet`);
      await conn.run(
        `COPY (SELECT ${names} FROM sync_rows WHERE _partition = ${lit(partition)})
           TO ${lit(file)} (FORMAT parquet, COMPRESSION zstd)`,
      );
      const key = objectKey(this.#prefix, shape.table, partition, syncId);
      const stored = await this.#store.putFile(key, file, 'application/vnd.apache.parquet');
      await rm(file, { force: true });
      out.push({ key, partition, rows, bytes: stored.size, sha256: stored.sha256 });
    }
    await conn.run('DROP TABLE sync_rows');
    return out;
  }

  async drop(): Promise<void> {
    for (const key of await this.#store.list(this.#prefix)) await this.#store.delete(key);
  }

  async close(): Promise<void> {}
}
