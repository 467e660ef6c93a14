import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { AppEnv } from '../http/env.ts';
import { ApiError } from '../http/errors.ts';
import { ANY_ERRORS, createRouter, errorResponses } from '../http/openapi.ts';

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

// ---- Declarations -------------------------------------------------------------------------

const NOT_BUILT = { 503: '`console_not_built`: the console is not built (`npm run build`)' } as const;

export const consolePage = createRoute({
  method: 'get',
  path: '/',
  operationId: 'consolePage',
  tags: ['console'],
  summary: 'The web console',
  description:
    'The page of the web console: no key is needed to load it; it signs in with one and calls this API with it. Revalidated at every load (`Cache-Control: no-cache`), under a Content-Security-Policy of its own. With ADMIN_PORT set, served on both ports.',
  security: [],
  responses: {
    200: { description: 'The page', content: { 'text/html': { schema: z.string() } } },
    ...errorResponses([503, ...ANY_ERRORS], NOT_BUILT),
  },
});

export const consoleAsset = createRoute({
  method: 'get',
  path: '/assets/{name}',
  operationId: 'consoleAsset',
  tags: ['console'],
  summary: 'A file of the web console',
  description:
    'A script, stylesheet or source map the page names. The name holds a hash of the content, so it is cached for a year (`immutable`); gzipped when the client accepts it.',
  security: [],
  request: { params: z.object({ name: z.string().openapi({ example: 'main-5SORBTVG.js' }) }) },
  responses: {
    200: {
      description: 'The file',
      content: {
        'text/javascript': { schema: z.string() },
        'text/css': { schema: z.string() },
        'application/json': {
          schema: z.record(z.string(), z.unknown()).openapi({ description: 'A source map' }),
        },
      },
    },
    ...errorResponses([404, ...ANY_ERRORS], { 404: 'No such file in this build, or nothing is built' }),
  },
});

// ---- Handlers -----------------------------------------------------------------------------

/**
 * The web console: the page at `/` and its content-hashed files under `/assets/`. No key is
 * needed to load them; the page signs in with one and calls the API with it. The page may be
 * revalidated at every load (it names the current assets); an asset's name changes with its
 * content, so it is cached for a year. A console built while the server runs is picked up at
 * the next request.
 */
export function consoleRoutes(opts: { distDir?: string } = {}): OpenAPIHono<AppEnv> {
  const distDir = opts.distDir ?? CONSOLE_DIST;
  let built: BuiltConsole | undefined;
  const current = () => {
    built ??= loadConsole(distDir);
    return built;
  };
  const app = createRouter();

  app.openapi(consolePage, (c) => {
    const site = current();
    if (!site) throw notBuilt();
    return c.body(site.html, 200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-cache',
      'content-security-policy': CONSOLE_CSP,
      'cross-origin-opener-policy': 'same-origin',
    });
  });

  app.openapi(consoleAsset, (c) => {
    const { name } = c.req.valid('param');
    const asset = current()?.assets.get(name);
    if (!asset) throw new ApiError('not_found', 404, `no asset ${name}`);
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
