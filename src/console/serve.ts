import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { Hono } from 'hono';
import type { AppEnv } from '../http/env.ts';
import { ApiError } from '../http/errors.ts';

/** Where `npm run build` (src/console/build.ts) writes the console. */
export const CONSOLE_DIST = fileURLToPath(new URL('./dist/', import.meta.url));

/**
 * The console page's policy: its own script and style files, calls to this origin, nothing
 * inline, no framing, no form posting anywhere (the sign-in form is handled in script, so a
 * key can never be submitted into a URL), and DOM sinks closed by Trusted Types.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

interface Asset {
  type: string;
  body: Buffer;
  gzipped: Buffer;
}

interface BuiltConsole {
  html: string;
  assets: Map<string, Asset>;
}

/** The built page and its assets, read once; undefined while the console is not built. */
function loadConsole(distDir: string): BuiltConsole | undefined {
  const index = join(distDir, 'index.html');
  if (!existsSync(index)) return undefined;
  const assets = new Map<string, Asset>();
  const dir = join(distDir, 'assets');
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    const body = readFileSync(join(dir, name));
    // Compressed once here rather than per request: the files never change while running.
    assets.set(name, {
      type: TYPES[extname(name)] ?? 'application/octet-stream',
      body,
      gzipped: gzipSync(body, { level: 9 }),
    });
  }
  return { html: readFileSync(index, 'utf8'), assets };
}

const notBuilt = () =>
  new ApiError(
    'console_not_built',
    503,
    'the web console is not built: run `npm run build` (it writes src/console/dist), then reload',
  );

/**
 * The web console: the page at `/` and its content-hashed files under `/assets/`. No key is
 * needed to load them; the page signs in with one and calls the API with it. Not API
 * operations, so not in `/openapi.json`. The page may be revalidated at every load (it
 * names the current assets); an asset's name changes with its content, so it is cached for a
 * year. A console built while the server runs is picked up at the next request.
 */
export function consoleRoutes(opts: { distDir?: string } = {}): Hono<AppEnv> {
  const distDir = opts.distDir ?? CONSOLE_DIST;
  let built: BuiltConsole | undefined;
  const current = () => {
    built ??= loadConsole(distDir);
    return built;
  };
  const app = new Hono<AppEnv>();

  app.get('/', (c) => {
    const site = current();
    if (!site) throw notBuilt();
    return c.body(site.html, 200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-cache',
      'content-security-policy': CONSOLE_CSP,
      'cross-origin-opener-policy': 'same-origin',
    });
  });

  app.get('/assets/:name', (c) => {
    const asset = current()?.assets.get(c.req.param('name'));
    if (!asset) throw new ApiError('not_found', 404, `no asset ${c.req.param('name')}`);
    const gzip = /\bgzip\b/.test(c.req.header('accept-encoding') ?? '');
    const body = gzip ? asset.gzipped : asset.body;
    return c.body(new Uint8Array(body), 200, {
      'content-type': asset.type,
      'cache-control': 'public, max-age=31536000, immutable',
      vary: 'Accept-Encoding',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
    });
  });

  return app;
}
