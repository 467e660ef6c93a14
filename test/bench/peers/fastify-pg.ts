/** Peer: Fastify, one INSERT per request through a pg pool. */
import Fastify from 'fastify';
import pg from 'pg';
import { announce, env, INSERT_COLUMNS, rowValues, toRow, valuesSql } from './common.ts';

const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), max: 20 });
const sql = `INSERT INTO events (${INSERT_COLUMNS}) VALUES ${valuesSql(1)} ON CONFLICT DO NOTHING`;
const app = Fastify({ logger: false });
app.post('/v1/events', async (req, reply) => {
  const row = toRow(req.body, new Date().toISOString());
  if (!row) return reply.code(400).send({ error: 'invalid event' });
  try {
    await pool.query(sql, rowValues(row));
    return reply.code(202).send({ id: row.id, status: 'accepted' });
  } catch {
    return reply.code(503).send({ error: 'database unavailable' });
  }
});
await app.listen({ port: 0, host: '127.0.0.1' });
announce(app.server, () => pool.end());
