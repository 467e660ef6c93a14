/** Peer: Express batch endpoint, one multi-row INSERT per request. */
import express from 'express';
import pg from 'pg';
import { announce, env, INSERT_COLUMNS, type PeerRow, rowValues, toRow, valuesSql } from './common.ts';

const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), max: 20 });
const statements = new Map<number, string>();
const sqlFor = (n: number) => {
  let s = statements.get(n);
  if (!s) {
    s = `INSERT INTO events (${INSERT_COLUMNS}) VALUES ${valuesSql(n)} ON CONFLICT DO NOTHING`;
    statements.set(n, s);
  }
  return s;
};
const app = express();
app.use(express.json({ limit: '1mb' }));
app.post('/v1/events/batch', async (req, res) => {
  const list = (req.body as { events?: unknown })?.events;
  if (!Array.isArray(list) || list.length === 0 || list.length > 1000) {
    res.status(400).json({ error: 'invalid batch' });
    return;
  }
  const receivedAt = new Date().toISOString();
  const rows: PeerRow[] = [];
  for (const e of list) {
    const row = toRow(e, receivedAt);
    if (row) rows.push(row);
  }
  try {
    if (rows.length > 0) await pool.query(sqlFor(rows.length), rows.flatMap(rowValues));
    res.status(202).json({ accepted: rows.length, ids: rows.map((r) => r.id) });
  } catch {
    res.status(503).json({ error: 'database unavailable' });
  }
});
announce(app.listen(0, '127.0.0.1'), () => pool.end());
