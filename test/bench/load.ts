/**
 * Load-generator child process: runs autocannon on request from the bench over IPC, so
 * the load generator has an event loop (and a core) of its own.
 */
import { createRequire } from 'node:module';
import { batchJson, eventJson } from './payload.ts';

export type LoadKind = 'single' | 'batch';

export interface LoadRequest {
  type: 'run';
  id: number;
  url: string;
  path: string;
  kind: LoadKind;
  /** Events per request when `kind` is batch. */
  batchSize: number;
  connections: number;
  durationS: number;
  headers: Record<string, string>;
  /** Open loop: requests per second over all connections (latency corrected for coordinated omission). */
  overallRate?: number;
}

/** What the bench asks of one run. */
export type LoadSpec = Omit<LoadRequest, 'type' | 'id'>;

export interface LoadResult {
  type: 'result';
  id: number;
  /** Responses received (any status). */
  responses: number;
  status2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** Wall time of the run, seconds, as autocannon measured it. */
  durationS: number;
  /** Every response time in ms, rounded to 0.01 ms, so runs can be merged exactly. */
  latenciesMs: number[];
}

export interface LoadFailure {
  type: 'error';
  id: number;
  message: string;
}

interface RequestSpec {
  method: 'POST';
  path: string;
  headers: Record<string, string>;
  body: string;
}

interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  pipelining: number;
  timeout: number;
  overallRate?: number;
  requests: { method: 'POST'; path: string; setupRequest: (req: RequestSpec) => RequestSpec }[];
}

interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
  statusCodeStats: Record<string, { count: number }>;
}

interface AutocannonInstance {
  on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): void;
}

type Autocannon = (
  opts: AutocannonOptions,
  cb: (err: Error | null, result: AutocannonResult) => void,
) => AutocannonInstance;

// autocannon ships no types; this is the slice of its API the bench uses.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

export function runLoad(req: LoadRequest): Promise<LoadResult> {
  const body = req.kind === 'batch' ? () => batchJson(req.batchSize) : eventJson;
  const headers = { 'content-type': 'application/json', ...req.headers };
  const latencies: number[] = [];
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: req.url,
        connections: req.connections,
        duration: req.durationS,
        pipelining: 1,
        timeout: 10,
        ...(req.overallRate ? { overallRate: req.overallRate } : {}),
        requests: [
          {
            method: 'POST',
            path: req.path,
            // A fresh body (fresh event ids) for every request.
            setupRequest: (r) => ({ ...r, method: 'POST', path: req.path, headers, body: body() }),
          },
        ],
      },
      (err, result) => {
        if (err) return reject(err);
        const statusCodes: Record<string, number> = {};
        for (const [code, { count }] of Object.entries(result.statusCodeStats)) statusCodes[code] = count;
        resolve({
          type: 'result',
          id: req.id,
          responses: latencies.length,
          status2xx: result['2xx'],
          non2xx: result.non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          statusCodes,
          durationS: result.duration,
          latenciesMs: latencies,
        });
      },
    );
    instance.on('response', (_client, _status, _bytes, ms) => {
      latencies.push(Math.round(ms * 100) / 100);
    });
  });
}

if (process.send) {
  const send = (msg: LoadResult | LoadFailure) => process.send?.(msg);
  process.on('message', (raw: unknown) => {
    const msg = raw as LoadRequest;
    if (msg.type !== 'run') return;
    runLoad(msg).then(send, (err: unknown) =>
      send({ type: 'error', id: msg.id, message: err instanceof Error ? err.message : String(err) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
}
