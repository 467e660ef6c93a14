import { randomUUID } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import type { Config } from '../config.ts';
import type { AppEnv } from './env.ts';

export interface HttpServer {
  port: number;
  /** Stops accepting, lets in-flight requests finish, closes idle keep-alive sockets. */
  close(): Promise<void>;
}

type TimeoutConfig = Pick<Config, 'HEADERS_TIMEOUT_MS' | 'REQUEST_TIMEOUT_MS'>;

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

/** Serves the app with timeouts, so slow or idle clients cannot hold sockets. */
export async function startHttpServer(
  app: Hono<AppEnv>,
  config: Pick<
    Config,
    'PORT' | 'HOST' | 'HEADERS_TIMEOUT_MS' | 'REQUEST_TIMEOUT_MS' | 'KEEP_ALIVE_TIMEOUT_MS'
  >,
): Promise<HttpServer> {
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve(
      {
        fetch: app.fetch,
        port: config.PORT,
        hostname: config.HOST,
        // Only read when the server is created; setting it afterwards has no effect.
        serverOptions: { connectionsCheckingInterval: connectionsCheckingInterval(config) },
      },
      () => resolve(s as Server),
    );
    (s as Server).once('error', reject);
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
  const port = typeof address === 'object' && address ? address.port : config.PORT;
  return {
    port,
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
