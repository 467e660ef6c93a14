import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildOpenApiDocument } from './helpers/noop-deps.ts';

// Part of `npm run check`: the OpenAPI document, built from createApp with no-op
// dependencies (what /openapi.json serves), linted by Redocly with redocly.yaml's rules.

const config = fileURLToPath(new URL('../redocly.yaml', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'tributary-openapi-'));
const file = join(dir, 'openapi.json');
let status = 1;
try {
  writeFileSync(file, `${JSON.stringify(buildOpenApiDocument(), null, 2)}\n`);
  const lint = spawnSync('npx', ['redocly', 'lint', '--config', config, file], {
    stdio: 'inherit',
    // No usage report and no update check: a check must not depend on the network.
    env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
  });
  status = lint.status ?? 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
