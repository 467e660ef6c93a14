/**
 * The floor of single-event ingest: bare `node:http`, no framework. Every POST has its body
 * read, parsed as JSON and answered 202 {"ok":true}; what HTTP, JSON and the load generator
 * cost on this machine, below which no Node server can go.
 */
import { createServer } from 'node:http';

const BODY = '{"ok":true}';
const HEADERS = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(BODY)) };

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    try {
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(202, HEADERS).end(BODY);
    } catch {
      res.writeHead(400, HEADERS).end(BODY);
    }
  });
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
});

const stop = () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 2_000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The bench holds our stdin open; when it goes away, however it died, so do we.
process.stdin.on('close', () => process.exit(0)).resume();
