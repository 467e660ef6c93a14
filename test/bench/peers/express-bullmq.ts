/**
 * Peer: Express enqueues one BullMQ job per event (answering 202 once the job is in Redis);
 * `bullmq-worker.ts`, a process of its own, inserts them.
 */
import { Queue } from 'bullmq';
import express from 'express';
import { announce, env, toRow } from './common.ts';

const connection = { url: env('REDIS_URL') };
const queue = new Queue(env('BULLMQ_QUEUE'), { connection, prefix: env('BULLMQ_PREFIX') });
const app = express();
app.use(express.json({ limit: '1mb' }));
app.post('/v1/events', async (req, res) => {
  const row = toRow(req.body, new Date().toISOString());
  if (!row) {
    res.status(400).json({ error: 'invalid event' });
    return;
  }
  try {
    await queue.add('event', row, { removeOnComplete: true, removeOnFail: 1000 });
    res.status(202).json({ id: row.id, status: 'accepted' });
  } catch {
    res.status(503).json({ error: 'queue unavailable' });
  }
});
announce(app.listen(0, '127.0.0.1'), () => queue.close());
