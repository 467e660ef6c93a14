import cluster, { type Worker as ClusterWorker } from 'node:cluster';
import type { Logger } from 'pino';
import { AggregatorRegistry, type Registry } from 'prom-client';

const METRICS_REQUEST = 'tributary:metrics-request';
const METRICS_REPLY = 'tributary:metrics-reply';
/** A process that dies within this long of its start is restarted after a pause, not at once. */
const RESTART_PAUSE_MS = 1_000;

interface MetricsRequest {
  type: typeof METRICS_REQUEST;
  id: number;
}
interface MetricsReply {
  type: typeof METRICS_REPLY;
  id: number;
  text?: string;
  contentType?: string;
  error?: string;
}

/**
 * The primary of `serve` with API_PROCESSES > 1: forks that many API processes sharing the
 * port, replaces one that dies, serves their summed metrics to whichever asks, and on
 * SIGTERM/SIGINT stops them all gracefully before exiting.
 */
export function runApiPrimary(processes: number, logger: Logger): void {
  const aggregator = new AggregatorRegistry();
  let stopping = false;
  const startedAt = new Map<ClusterWorker, number>();

  const fork = () => {
    const worker = cluster.fork();
    startedAt.set(worker, Date.now());
    worker.on('message', (msg: MetricsRequest) => {
      if (msg?.type !== METRICS_REQUEST) return;
      aggregator.clusterMetrics().then(
        (text) =>
          worker.send({
            type: METRICS_REPLY,
            id: msg.id,
            text,
            contentType: aggregator.contentType,
          } satisfies MetricsReply),
        (err: unknown) =>
          worker.send({ type: METRICS_REPLY, id: msg.id, error: String(err) } satisfies MetricsReply),
      );
    });
  };

  cluster.on('exit', (worker, code, signal) => {
    const lived = Date.now() - (startedAt.get(worker) ?? 0);
    startedAt.delete(worker);
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        logger.info('all API processes stopped');
        process.exit(0);
      }
      return;
    }
    logger.error({ pid: worker.process.pid, code, signal }, 'API process died; starting another');
    setTimeout(fork, lived < RESTART_PAUSE_MS ? RESTART_PAUSE_MS : 0);
  });

  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping API processes');
    const live = Object.values(cluster.workers ?? {});
    if (live.length === 0) process.exit(0);
    for (const worker of live) worker?.process.kill('SIGTERM');
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  logger.info({ processes }, 'starting API processes');
  for (let i = 0; i < processes; i++) fork();
}

/**
 * `/metrics` of an API process: the sum over every API process when it runs under the
 * primary above (asked over IPC), else its own registry.
 */
export function metricsSource(registry: Registry): () => Promise<{ text: string; contentType: string }> {
  const own = async () => ({ text: await registry.metrics(), contentType: registry.contentType });
  if (!cluster.isWorker || !process.send) return own;
  // Constructing one is what makes this process answer the primary's collection requests.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  let nextId = 0;
  const waiting = new Map<number, (reply: MetricsReply | undefined) => void>();
  process.on('message', (msg: MetricsReply) => {
    if (msg?.type !== METRICS_REPLY) return;
    waiting.get(msg.id)?.(msg);
    waiting.delete(msg.id);
  });
  return async () => {
    const id = nextId++;
    const reply = await new Promise<MetricsReply | undefined>((resolve) => {
      const timer = setTimeout(() => {
        waiting.delete(id);
        resolve(undefined);
      }, 5_000);
      waiting.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      process.send?.({ type: METRICS_REQUEST, id } satisfies MetricsRequest);
    });
    // Without the primary's answer, this process's own figures beat none.
    if (!reply?.text) return own();
    return { text: reply.text, contentType: reply.contentType ?? registry.contentType };
  };
}
