/** Peer: Express, one INSERT per request through a pg pool. */
import express from 'express';
import pg from 'pg';
import { announce, env, INSERT_COLUMNS, rowValues, toRow, valuesSql } from './common.ts';

const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), max: 20 });
const sql = `INSERT INTO events (${INSERT_COLUMNS}) VALUES ${valuesSql(1)} ON CONFLICT DO NOTHING`;
const app = express();
app.use(express.json({ limit: '1mb' }));
app.post('/v1/events', async (req, res) => {
  const row = toRow(req.body, new Date().toISOString());
  if (!row) {
    res.status(400).json({ error: 'invalid event' });
    return;
  }
  try {
    await pool.query(sql, rowValues(row));
    res.status(202).json({ id: row.id, status: 'accepted' });
  } catch {
    res.status(503).json({ error: 'database unavailable' });
  }
});
announce(app.listen(0, '127.0.0.1'), () => pool.end());
