/**
 * The baseline: a minimal Hono app on @hono/node-server that answers every POST with
 * 202 {"ok":true}. It measures what HTTP + Hono + the load generator cost on this machine.
 */
import { serve } from '@hono/node-server';
import { Hono } from 'hono';

const app = new Hono();
app.post('*', (c) => c.json({ ok: true }, 202));

const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: info.port })}\n`);
});

const stop = () => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The bench holds our stdin open; when it goes away, however it died, so do we.
process.stdin.on('close', () => process.exit(0)).resume();
