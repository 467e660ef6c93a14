import { existsSync } from 'node:fs';
import { buildConsole } from '../../src/console/build.ts';
import { CHROMIUM } from './browser.ts';
import { setup as serversSetup } from './global-setup.ts';

/**
 * The browser project's set-up: the servers the stack needs, Chromium, and a console built
 * from the current source (a run of one browser test file would otherwise test a stale one).
 */
export async function setup(): Promise<void> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `the browser tests need Chromium at ${CHROMIUM} (run them with ops/local, which installs Debian's chromium, or set CHROMIUM_PATH)`,
    );
  }
  await serversSetup();
  await buildConsole();
}
