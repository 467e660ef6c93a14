import { defineConfig } from 'vitest/config';

/**
 * The unit project of vitest.config.ts on its own, for Stryker: its vitest runner cannot pick
 * a project, and with the full config a mutated module would also run the integration and fault
 * tests that import it (real PostgreSQL and Redis, minutes per mutant).
 */
// biome-ignore lint/style/noDefaultExport: vitest reads the config from the default export
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
  },
});
