import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

// Builds the web console: src/console/web → src/console/dist (index.html + assets/ with
// content-hashed names), which `serve.ts` serves. `npm run build` runs it (and `prepare`,
// `prestart` and `npm test`), so a checkout never serves a stale console.

const WEB = fileURLToPath(new URL('./web/', import.meta.url));
const DIST = fileURLToPath(new URL('./dist/', import.meta.url));

export interface BuiltFile {
  name: string;
  bytes: number;
  gzipBytes: number;
}

/** A favicon inline, so the browser asks the server for no /favicon.ico (img-src allows data:). */
const ICON =
  "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Cpath d='M2 3c4 0 4 5 8 5s2 5 4 5' fill='none' stroke='%232454c5' stroke-width='2.5'/%3E%3C/svg%3E";

function indexHtml(script: string, style: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Tributary</title>
<link rel="icon" href="${ICON}">
<link rel="stylesheet" href="/assets/${style}">
<script type="module" src="/assets/${script}"></script>
</head>
<body>
<noscript>The Tributary console needs JavaScript.</noscript>
<div id="app"></div>
</body>
</html>
`;
}

/**
 * Bundles the console (minified, with source maps) into `outDir`, replacing what was there.
 * Built beside it and moved into place, so a running server never reads half a build.
 */
export async function buildConsole(outDir = DIST): Promise<BuiltFile[]> {
  const building = `${outDir.replace(/\/$/, '')}.building-${process.pid}`;
  const assets = join(building, 'assets');
  rmSync(building, { recursive: true, force: true });
  mkdirSync(assets, { recursive: true });
  const result = await build({
    entryPoints: [join(WEB, 'main.tsx')],
    tsconfig: join(WEB, 'tsconfig.json'),
    bundle: true,
    outdir: assets,
    entryNames: '[name]-[hash]',
    assetNames: '[name]-[hash]',
    format: 'esm',
    // What the browsers of the last few years run; the bundle stays untranspiled there.
    target: ['es2022', 'chrome111', 'firefox115', 'safari16'],
    minify: true,
    sourcemap: 'linked',
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  const outputs = Object.entries(result.metafile.outputs);
  const entry = outputs.find(([, o]) => o.entryPoint !== undefined && o.cssBundle !== undefined);
  if (!entry?.[1].cssBundle) throw new Error('the console build made no script with a stylesheet');
  writeFileSync(join(building, 'index.html'), indexHtml(basename(entry[0]), basename(entry[1].cssBundle)));
  const files = outputs.map(([path]) => {
    const body = readFileSync(path);
    return {
      name: relative(building, path),
      bytes: body.length,
      gzipBytes: gzipSync(body, { level: 9 }).length,
    };
  });
  rmSync(outDir, { recursive: true, force: true });
  renameSync(building, outDir);
  return files;
}

if (import.meta.main) {
  const started = performance.now();
  const files = await buildConsole();
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  for (const f of files.filter((f) => !f.name.endsWith('.map'))) {
    console.log(`  ${f.name.padEnd(40)} ${kib(f.bytes).padStart(10)}  (gzip ${kib(f.gzipBytes)})`);
  }
  console.log(
    `console built into ${relative(process.cwd(), DIST) || DIST} in ${Math.round(performance.now() - started)} ms`,
  );
}
