/**
 * Peer: Express enqueues one BullMQ job per event (answering 202 once the job is in Redis);
 * `bullmq-worker.ts`, a process of its own, inserts them.
 */
import { Queue } from 'bullmq';
import { announce, env } from './common.ts';
import { expressSingleEventApp } from './express-single.ts';

const connection = { url: env('REDIS_URL') };
const queue = new Queue(env('BULLMQ_QUEUE'), { connection, prefix: env('BULLMQ_PREFIX') });
const app = expressSingleEventApp(
  (row) => queue.add('event', row, { removeOnComplete: true, removeOnFail: 1000 }),
  'queue unavailable',
);
announce(app.listen(0, '127.0.0.1'), () => queue.close());
