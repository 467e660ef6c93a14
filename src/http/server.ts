import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type RequestListener,
  type Server,
  type ServerOptions,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import { type Config, ConfigError } from '../config.ts';
import type { AppEnv } from './env.ts';
import type { FastPath } from './fast-ingest.ts';
import type { Listener } from './middleware/listener.ts';

export interface HttpServers {
  /** The public listener's port (PORT). */
  port: number;
  /** The admin listener's port, when ADMIN_PORT is set. */
  adminPort: number | undefined;
  /** Whether both speak HTTPS (TLS_CERT_FILE and TLS_KEY_FILE). */
  tls: boolean;
  /** Stops accepting, lets in-flight requests finish, closes idle keep-alive sockets; on every listener. */
  close(): Promise<void>;
}

type TimeoutConfig = Pick<Config, 'HEADERS_TIMEOUT_MS' | 'REQUEST_TIMEOUT_MS' | 'KEEP_ALIVE_TIMEOUT_MS'>;
type ServersConfig = TimeoutConfig &
  Pick<Config, 'PORT' | 'HOST' | 'ADMIN_PORT' | 'TLS_CERT_FILE' | 'TLS_KEY_FILE'>;
type Tls = { cert: Buffer; key: Buffer };

/**
 * How often Node looks for requests past their headers or request timeout. Node checks
 * only every 30 s by default, so a slow-loris client trickling bytes kept its socket up
 * to 30 s whatever the configured timeouts; checking at a quarter of the shorter
 * timeout (at most every second) cuts it off within 25 % of the configured value.
 */
function connectionsCheckingInterval(config: TimeoutConfig): number {
  const shortest = Math.min(config.HEADERS_TIMEOUT_MS, config.REQUEST_TIMEOUT_MS);
  return Math.max(25, Math.min(1_000, Math.floor(shortest / 4)));
}

function readPem(variable: 'TLS_CERT_FILE' | 'TLS_KEY_FILE', file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(
      `invalid configuration:\n  ${variable}: cannot read ${file}: ${(err as Error).message}`,
    );
  }
}

/**
 * Serves the app on PORT and, when ADMIN_PORT is set, on a second listener that alone
 * answers `/metrics` and `/v1/admin/*` (see `splitListeners`). Both bind HOST and speak
 * HTTPS when TLS_CERT_FILE and TLS_KEY_FILE are set.
 */
export async function startHttpServers(
  app: Hono<AppEnv>,
  config: ServersConfig,
  fastPath?: FastPath,
): Promise<HttpServers> {
  const tls =
    config.TLS_CERT_FILE !== undefined && config.TLS_KEY_FILE !== undefined
      ? {
          cert: readPem('TLS_CERT_FILE', config.TLS_CERT_FILE),
          key: readPem('TLS_KEY_FILE', config.TLS_KEY_FILE),
        }
      : undefined;
  const split = config.ADMIN_PORT !== undefined;
  const main = await startHttpServer(app, config, config.PORT, tls, split ? 'public' : undefined, fastPath);
  let admin: Awaited<ReturnType<typeof startHttpServer>> | undefined;
  if (config.ADMIN_PORT !== undefined) {
    try {
      admin = await startHttpServer(app, config, config.ADMIN_PORT, tls, 'admin', fastPath);
    } catch (err) {
      await main.close();
      throw err;
    }
  }
  return {
    port: main.port,
    adminPort: admin?.port,
    tls: tls !== undefined,
    close: async () => {
      await Promise.all([main.close(), admin?.close()]);
    },
  };
}

/** One listener, with timeouts, so slow or idle clients cannot hold sockets. */
async function startHttpServer(
  app: Hono<AppEnv>,
  config: TimeoutConfig & Pick<Config, 'HOST'>,
  port: number,
  tls: Tls | undefined,
  listener: Listener | undefined,
  fastPath: FastPath | undefined,
): Promise<{ port: number; close(): Promise<void> }> {
  // The app tells the listeners apart by this binding (middleware/listener.ts).
  const fetch =
    listener === undefined ? app.fetch : (req: Request, env: object) => app.fetch(req, { ...env, listener });
  // Only read when the server is created; setting it afterwards has no effect.
  const serverOptions = { connectionsCheckingInterval: connectionsCheckingInterval(config) };
  const server = await new Promise<Server>((resolve, reject) => {
    // The fast path, when given, sees each request first (fast-ingest.ts).
    const create = (tls ? createHttpsServer : createHttpServer) as typeof createHttpServer;
    const createServer = fastPath
      ? (opts: ServerOptions, listen: RequestListener) =>
          create(opts, (req, res) => {
            if (!fastPath(req, res, listener)) listen(req, res);
          })
      : create;
    // The options of an http or https server (the type's union also admits http2's).
    const options = {
      fetch,
      port,
      hostname: config.HOST,
      createServer,
      serverOptions: tls ? { ...serverOptions, ...tls } : serverOptions,
    } as Parameters<typeof serve>[0];
    // An https.Server has the http.Server members used below (Node shares them between the two).
    const s = serve(options, () => resolve(s as Server)) as Server;
    s.once('error', reject);
  });
  // The headers are part of the request, so their timeout cannot usefully be the longer one.
  server.headersTimeout = Math.min(config.HEADERS_TIMEOUT_MS, config.REQUEST_TIMEOUT_MS);
  server.requestTimeout = config.REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = config.KEEP_ALIVE_TIMEOUT_MS;
  // The response a socket's current request is waiting for, until it is sent.
  const responses = new WeakMap<Socket, ServerResponse>();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    responses.set(socket, res);
    res.once('finish', () => {
      if (responses.get(socket) === res) responses.delete(socket);
    });
  });
  closeIdleSockets(server, responses, config.REQUEST_TIMEOUT_MS);
  answerClientErrors(server, responses);
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

/**
 * Closes a socket idle for `idleMs`: a client that stopped reading its response, or one
 * that connected and went quiet. Not a socket idle only because the server is still
 * working on its request: with Node's default (destroy any idle socket) a burst that
 * kept the server busy for `idleMs` dropped waiting clients without an answer. Clients
 * slow to send are cut off by the headers and request timeouts instead, with a 408.
 */
function closeIdleSockets(server: Server, responses: WeakMap<Socket, ServerResponse>, idleMs: number): void {
  server.on('timeout', (socket: Socket) => {
    const res = responses.get(socket);
    if (res && !res.headersSent && !res.writableEnded) return;
    socket.destroy();
  });
  server.timeout = idleMs;
}

/** Refusals Node makes before the app sees a request, in the contract's error shape. */
const CLIENT_ERRORS: Record<string, { status: number; code: string; message: string }> = {
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    code: 'request_timeout',
    message: 'the request was not received in time',
  },
  HPE_HEADER_OVERFLOW: {
    status: 431,
    code: 'headers_too_large',
    message: 'the request headers are too large',
  },
  HPE_CHUNK_EXTENSIONS_OVERFLOW: {
    status: 413,
    code: 'payload_too_large',
    message: 'chunk extensions are too large',
  },
};
const MALFORMED = { status: 400, code: 'bad_request', message: 'malformed HTTP request' };

/**
 * Answers what Node's HTTP parser refuses (timeouts, malformed requests, oversized
 * headers) with the contract's `{"error":{"code","message"}}` instead of Node's bare
 * status line, then closes the connection, as Node does.
 */
function answerClientErrors(server: Server, responses: WeakMap<Socket, ServerResponse>): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const res = responses.get(socket);
    const answered = res !== undefined && (res.headersSent || res.writableEnded);
    if (err.code !== 'ECONNRESET' && socket.writable && !answered) {
      const { status, code, message } = CLIENT_ERRORS[err.code ?? ''] ?? MALFORMED;
      const requestId = randomUUID();
      const body = JSON.stringify({ error: { code, message, requestId } });
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\nx-request-id: ${requestId}\r\n\r\n${body}`,
      );
    }
    socket.destroy(err);
  });
}
