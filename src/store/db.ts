import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import * as schema from './schema.ts';

export type Db = NodePgDatabase<typeof schema>;

export interface PoolOptions {
  url: string;
  max: number;
  /** Application name shown in pg_stat_activity. */
  applicationName: string;
}

/** Server-side limit on a statement inside {@link inTransaction}. */
const STATEMENT_TIMEOUT_MS = 60_000;

/**
 * A pool whose statements never depend on session state, so it works through PgBouncer
 * in transaction mode. The only startup parameter is `application_name`: PgBouncer
 * (1.18 at least) refuses a connection that sends any other one it does not track, such as
 * `statement_timeout` ("unsupported startup parameter", SQLSTATE 08P01), and a session
 * `SET` would leak into whichever client gets the server connection next. So the
 * server-side timeout is set per transaction (`SET LOCAL`, {@link inTransaction}); a single
 * statement is bounded by the client-side `query_timeout`, and by the role's own
 * `statement_timeout` where the operator sets one (README, Scaling out).
 */
export function createPool(opts: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max,
    application_name: opts.applicationName,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    query_timeout: STATEMENT_TIMEOUT_MS + 5_000,
  });
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  // Nor may a checked-out one (pg-pool removes its idle listener on checkout): a transaction
  // held across statements (inTransaction, the materialisation runners) whose server goes away
  // sees the error on its next query, and the pool drops the broken client on release.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

export function createDb(pool: pg.Pool): Db {
  return drizzle(pool, { schema });
}

/**
 * A connection of its own, with no client-side query timeout, for the long COPY streams of
 * archiving and restoring (a month of a busy service takes a while). Run the COPY inside
 * {@link beginUntimed}, so a role's default `statement_timeout` does not cut it short.
 * The caller ends it.
 */
export async function connectForCopy(url: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: url,
    application_name: applicationName,
    connectionTimeoutMillis: 5_000,
  });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/**
 * Starts a transaction whose statements have no server-side timeout (`SET LOCAL`, so
 * nothing outlives it on a connection PgBouncer hands to someone else), in one round trip.
 */
export async function beginUntimed(client: pg.ClientBase, opts: { readOnly?: boolean } = {}): Promise<void> {
  await client.query(`BEGIN${opts.readOnly ? ' READ ONLY' : ''}; SET LOCAL statement_timeout = 0`);
}

/**
 * Runs `fn` in one transaction on one pooled connection: COMMIT when it resolves, ROLLBACK
 * when it throws. Its statements have a server-side timeout, set with `SET LOCAL` so it ends
 * with the transaction (safe through PgBouncer); BEGIN and SET go in one round trip.
 */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(`BEGIN; SET LOCAL statement_timeout = ${STATEMENT_TIMEOUT_MS}`);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
