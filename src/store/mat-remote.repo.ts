import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import {
  type Destination,
  DestinationMovedError,
  type DestinationState,
  type Sync,
  stillAt,
} from '../materialize/destination.ts';
import type { TableShape } from './mat-changes.repo.ts';
import { ident } from './mat-ddl.ts';

/**
 * A materialisation's tables in another PostgreSQL database (ARCHITECTURE §17), written from
 * the staging schema: each sync is one transaction there that replaces the rows of the
 * changed keys and moves the position kept in `<schema>._tributary_sync`, so the position
 * never runs ahead of the rows nor behind them. Tables have the staging tables' columns,
 * types and primary keys (a generated column is a plain one here).
 */
export class PostgresDestination implements Destination {
  readonly granularity = 'rows';
  readonly location: string;
  readonly #url: string;
  readonly #schema: string;

  constructor(url: string, schema: string) {
    this.#url = url;
    this.#schema = schema;
    const u = new URL(url);
    this.location = `postgres://${u.host}${u.pathname}#${schema}`;
  }

  async #connect(): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: this.#url,
      application_name: 'tributary-materialize',
      connectionTimeoutMillis: 5_000,
    });
    client.on('error', () => {});
    await client.connect();
    return client;
  }

  async state(): Promise<DestinationState | null> {
    const client = await this.#connect();
    try {
      const exists = await client.query(
        `SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = '_tributary_sync'`,
        [this.#schema],
      );
      if (exists.rowCount === 0) return null;
      const r = await client.query<{ generation: string; xid: string; seq: string }>(
        `SELECT generation, xid, seq::text FROM ${ident(this.#schema)}._tributary_sync`,
      );
      const row = r.rows[0];
      return row ? { generation: row.generation, position: { xid: row.xid, seq: Number(row.seq) } } : null;
    } finally {
      await client.end().catch(() => {});
    }
  }

  async apply(sync: Sync): Promise<void> {
    const s = ident(this.#schema);
    const client = await this.#connect();
    try {
      await client.query('BEGIN; SET LOCAL statement_timeout = 0');
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${s}._tributary_sync (generation text NOT NULL, xid text NOT NULL,
           seq bigint NOT NULL, synced_at timestamptz NOT NULL)`,
      );
      // One sync at a time, and only from the state it began with.
      await client.query(`LOCK TABLE ${s}._tributary_sync IN EXCLUSIVE MODE`);
      const held = await client.query<{ generation: string; xid: string; seq: string }>(
        `SELECT generation, xid, seq::text FROM ${s}._tributary_sync`,
      );
      const row = held.rows[0];
      const now = row
        ? { generation: row.generation, position: { xid: row.xid, seq: Number(row.seq) } }
        : null;
      if (!stillAt(now, sync.expected))
        throw new DestinationMovedError(`${this.location} moved on since the sync began`);
      if (sync.full) {
        const tables = await client.query<{ t: string }>(
          `SELECT tablename AS t FROM pg_tables WHERE schemaname = $1 AND tablename <> '_tributary_sync'`,
          [this.#schema],
        );
        for (const { t } of tables.rows) await client.query(`DROP TABLE ${s}.${ident(t)} CASCADE`);
      }
      for (const shape of sync.shapes) await this.#ensureTable(client, shape);
      for (const t of sync.tables) {
        const table = `${s}.${ident(t.shape.table)}`;
        if (t.keysCsv !== undefined && !sync.full) {
          const keyTypes = t.shape.key.map((k) => {
            const c = t.shape.columns.find((x) => x.name === k);
            return `${ident(k)} ${c?.type ?? 'text'}`;
          });
          await client.query(`CREATE TEMP TABLE sync_keys (${keyTypes.join(', ')}) ON COMMIT DROP`);
          await pipeline(
            createReadStream(t.keysCsv),
            client.query(copyFrom('COPY sync_keys FROM STDIN WITH (FORMAT csv)')),
          );
          const on = t.shape.key.map((k) => `d.${ident(k)} = k.${ident(k)}`).join(' AND ');
          await client.query(`DELETE FROM ${table} d USING sync_keys k WHERE ${on}`);
          await client.query('DROP TABLE sync_keys');
        }
        const columns = t.shape.columns.map((c) => ident(c.name)).join(', ');
        await pipeline(
          createReadStream(t.rowsCsv),
          client.query(copyFrom(`COPY ${table} (${columns}) FROM STDIN WITH (FORMAT csv)`)),
        );
      }
      await client.query(`DELETE FROM ${s}._tributary_sync`);
      await client.query(
        `INSERT INTO ${s}._tributary_sync (generation, xid, seq, synced_at) VALUES ($1, $2, $3, now())`,
        [sync.generation, sync.position.xid, sync.position.seq],
      );
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** Makes a table as the staging schema has it, and adds the columns it gained since. */
  async #ensureTable(client: pg.Client, shape: TableShape): Promise<void> {
    const table = `${ident(this.#schema)}.${ident(shape.table)}`;
    const columns = shape.columns.map((c) => `${ident(c.name)} ${c.type}`);
    const key = shape.key.length > 0 ? `, PRIMARY KEY (${shape.key.map(ident).join(', ')})` : '';
    await client.query(`CREATE TABLE IF NOT EXISTS ${table} (${columns.join(', ')}${key})`);
    const have = await client.query<{ name: string }>(
      `SELECT column_name AS name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2`,
      [this.#schema, shape.table],
    );
    const present = new Set(have.rows.map((c) => c.name));
    const missing = shape.columns.filter((c) => !present.has(c.name));
    if (missing.length > 0) {
      await client.query(
        `ALTER TABLE ${table} ${missing.map((c) => `ADD COLUMN ${ident(c.name)} ${c.type}`).join(', ')}`,
      );
    }
  }

  async drop(): Promise<void> {
    const client = await this.#connect();
    try {
      await client.query(`DROP SCHEMA IF EXISTS ${ident(this.#schema)} CASCADE`);
    } finally {
      await client.end().catch(() => {});
    }
  }

  async close(): Promise<void> {}
}
