/** Peer: Express, one INSERT per request through a pg pool. */
import pg from 'pg';
import { announce, env, INSERT_COLUMNS, rowValues, valuesSql } from './common.ts';
import { expressSingleEventApp } from './express-single.ts';

const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), max: 20 });
const sql = `INSERT INTO events (${INSERT_COLUMNS}) VALUES ${valuesSql(1)} ON CONFLICT DO NOTHING`;
const app = expressSingleEventApp((row) => pool.query(sql, rowValues(row)), 'database unavailable');
announce(app.listen(0, '127.0.0.1'), () => pool.end());
