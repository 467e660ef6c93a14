/**
 * Open-loop load at a fixed rate, for latency at a given rate and for the end-to-end run.
 *
 * Requests are due at evenly spaced instants (start + i / rate), whatever the server does;
 * each one's latency counts from when it was due, not from when a connection was free to
 * send it, so a server that stalls is charged for the requests that waited (no coordinated
 * omission). Up to CONNECTIONS keep-alive connections, opened as needed; a due request waits
 * for a free one. wrk has no fixed-rate mode (wrk2 is not in Debian) and autocannon's rate
 * limit sends each connection's quota back to back at the start of every second, so this is
 * a small HTTP/1.1 client on raw sockets: cheap enough not to be the limit on 2 cores.
 *
 * Run as a child (see {@link runOpenLoop}); configured through its environment; prints one
 * JSON line.
 */
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { track } from './children.ts';
import { batchJson, eventJson } from './payload.ts';
import { percentile } from './report.ts';

export interface OpenLoopSpec {
  url: string;
  path: string;
  /** Events per request; 0 sends a single event (not wrapped in a batch). */
  batch: number;
  /** Requests per second. */
  rate: number;
  /** Most connections opened. */
  connections: number;
  durationS: number;
  apiKey?: string;
}

export interface OpenLoopResult {
  /** Requests that fell due in the window. */
  due: number;
  status2xx: number;
  non2xx: number;
  /** Requests that failed on the socket or got no answer before the end. */
  errors: number;
  /** Requests still waiting for a free connection when the window closed (the server fell behind). */
  unsent: number;
  durationS: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /**
   * p99 of how late the generator itself sent requests that found a free connection: its own
   * timer and event-loop delay, which the latencies include. Near 0 means the client is not skewing them.
   */
  sendLagP99Ms: number;
  connectionsOpened: number;
  /** Every latency after the first second, ms (0.01 ms resolution), so runs can be merged exactly. */
  latenciesMs: number[];
}

const SELF = fileURLToPath(import.meta.url);
const WARMUP_MS = 1_000;

/** Runs the generator in a child; `onStart` gets its pid (for CPU metering). */
export function runOpenLoop(
  spec: OpenLoopSpec,
  onStart: (pid: number) => void = () => {},
): Promise<OpenLoopResult> {
  const child = track(
    spawn(process.execPath, [SELF], {
      env: { PATH: process.env.PATH ?? '', OPEN_LOOP: JSON.stringify(spec) },
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  onStart(child.pid ?? 0);
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => {
      const line = out.trim().split('\n').at(-1);
      if (code !== 0 || !line) return reject(new Error(`open-loop generator exited ${code}: ${out}`));
      resolve(JSON.parse(line) as OpenLoopResult);
    });
  });
}

/** One keep-alive connection with at most one request in flight. */
interface Conn {
  socket: Socket;
  buffer: Buffer;
  /** When the request in flight was due, or undefined when idle. */
  dueAt: number | undefined;
}

const HEADER_END = Buffer.from('\r\n\r\n');
const CHUNKED_END = Buffer.from('\r\n0\r\n\r\n');

/** Length of the first complete response in `buf` and its status, or undefined if incomplete. */
function parseResponse(buf: Buffer): { length: number; status: number } | undefined {
  const headEnd = buf.indexOf(HEADER_END);
  if (headEnd < 0) return undefined;
  const head = buf.toString('latin1', 0, headEnd);
  const status = Number(head.slice(9, 12));
  const contentLength = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (contentLength) {
    const length = headEnd + 4 + Number(contentLength[1]);
    return buf.length >= length ? { length, status } : undefined;
  }
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
    const end = buf.indexOf(CHUNKED_END, headEnd + 2);
    return end < 0 ? undefined : { length: end + CHUNKED_END.length, status };
  }
  return { length: headEnd + 4, status };
}

async function generate(spec: OpenLoopSpec): Promise<OpenLoopResult> {
  const url = new URL(spec.url);
  const head =
    `POST ${spec.path} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\n` +
    (spec.apiKey ? `x-api-key: ${spec.apiKey}\r\n` : '');
  const request = () => {
    const body = spec.batch > 0 ? batchJson(spec.batch) : eventJson();
    return `${head}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  };
  const latencies: number[] = [];
  const sendLags: number[] = [];
  // Latencies of requests due in the first second are not kept: this process is fresh, and
  // its first requests wait for its own JIT and for connections to open.
  let measureFrom = Number.POSITIVE_INFINITY;
  const idle: Conn[] = [];
  const waiting: number[] = [];
  let open = 0;
  let opened = 0;
  let status2xx = 0;
  let non2xx = 0;
  let errors = 0;

  const send = (conn: Conn, dueAt: number) => {
    conn.dueAt = dueAt;
    conn.socket.write(request());
  };
  const release = (conn: Conn) => {
    const next = waiting.shift();
    if (next === undefined) idle.push(conn);
    else send(conn, next);
  };
  const openConn = (dueAt: number) => {
    open++;
    opened++;
    const socket = connect({ host: url.hostname, port: Number(url.port), noDelay: true });
    const conn: Conn = { socket, buffer: Buffer.alloc(0), dueAt: undefined };
    socket.once('connect', () => send(conn, dueAt));
    socket.on('data', (chunk: Buffer) => {
      conn.buffer = conn.buffer.length ? Buffer.concat([conn.buffer, chunk]) : chunk;
      const res = parseResponse(conn.buffer);
      if (!res || conn.dueAt === undefined) return;
      if (conn.dueAt >= measureFrom) latencies.push(performance.now() - conn.dueAt);
      if (res.status >= 200 && res.status < 300) status2xx++;
      else non2xx++;
      conn.buffer = conn.buffer.subarray(res.length);
      conn.dueAt = undefined;
      release(conn);
    });
    // A server closing an idle keep-alive connection is normal; losing a request is not.
    socket.on('error', () => {});
    socket.once('close', () => {
      open--;
      const i = idle.indexOf(conn);
      if (i >= 0) idle.splice(i, 1);
      if (conn.dueAt !== undefined) errors++;
      conn.dueAt = undefined;
    });
  };
  const dispatch = (dueAt: number) => {
    const conn = idle.pop();
    if (conn) {
      if (dueAt >= measureFrom) sendLags.push(performance.now() - dueAt);
      send(conn, dueAt);
    } else if (open < spec.connections) openConn(dueAt);
    else waiting.push(dueAt);
  };

  const intervalMs = 1000 / spec.rate;
  const started = performance.now();
  measureFrom = started + WARMUP_MS;
  const endAt = started + spec.durationS * 1000;
  let due = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = Math.min(performance.now(), endAt);
      while (started + due * intervalMs <= now) dispatch(started + due++ * intervalMs);
      if (now >= endAt) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 1);
  });
  const durationS = (performance.now() - started) / 1000;
  const unsent = waiting.length;
  waiting.length = 0;
  // Requests in flight get a few seconds to be answered; after that they count as errors.
  const graceEnd = performance.now() + 5_000;
  while (idle.length < open && performance.now() < graceEnd) await new Promise((r) => setTimeout(r, 10));
  const inFlight = open - idle.length;
  for (const c of [...idle]) c.socket.destroy();
  const sorted = Float64Array.from(latencies).sort();
  const ms = (v: number) => Math.round(v * 100) / 100;
  return {
    due,
    status2xx,
    non2xx,
    errors: errors + inFlight,
    unsent,
    durationS,
    p50Ms: ms(percentile(sorted, 50) ?? 0),
    p99Ms: ms(percentile(sorted, 99) ?? 0),
    maxMs: ms(sorted.at(-1) ?? 0),
    sendLagP99Ms: ms(percentile(Float64Array.from(sendLags).sort(), 99) ?? 0),
    connectionsOpened: opened,
    latenciesMs: latencies.map(ms),
  };
}

if (import.meta.main) {
  const result = await generate(JSON.parse(process.env.OPEN_LOOP ?? '{}') as OpenLoopSpec);
  // Exit once the line is flushed: a pipe write is asynchronous, and exit() would cut it short.
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}
