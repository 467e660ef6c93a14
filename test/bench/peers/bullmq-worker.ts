/** Peer: the BullMQ worker of `express-bullmq.ts`: one INSERT per job, 50 jobs at a time. */
import { Worker } from 'bullmq';
import pg from 'pg';
import { env, INSERT_COLUMNS, type PeerRow, rowValues, valuesSql } from './common.ts';

const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), max: 20 });
const sql = `INSERT INTO events (${INSERT_COLUMNS}) VALUES ${valuesSql(1)} ON CONFLICT DO NOTHING`;
const worker = new Worker<PeerRow>(
  env('BULLMQ_QUEUE'),
  async (job) => {
    await pool.query(sql, rowValues(job.data));
  },
  { connection: { url: env('REDIS_URL') }, prefix: env('BULLMQ_PREFIX'), concurrency: 50 },
);
process.stdout.write(`${JSON.stringify({ msg: 'listening', port: 0 })}\n`);
const stop = () => void worker.close().finally(() => pool.end().finally(() => process.exit(0)));
process.on('SIGTERM', stop);
process.stdin.on('close', stop).resume();
