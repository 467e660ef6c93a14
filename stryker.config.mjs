// @ts-check
/**
 * Mutation testing of the pure modules: `npm run test:mutation` (minutes; not part of CI).
 * A surviving mutant is a rule no unit test pins down, or an equivalent change.
 * @type {import('@stryker-mutator/api/core').PartialStrykerOptions}
 */
// biome-ignore lint/style/noDefaultExport: Stryker reads its options from the default export
export default {
  testRunner: 'vitest',
  // Unit tests only: the integration and fault suites need servers and take minutes per run.
  vitest: { configFile: 'vitest.unit.config.ts' },
  mutate: [
    'src/events/**/*.ts',
    'src/worker/checkpoint/record.ts',
    'src/retention/policy.ts',
    'src/compliance/metadata-cipher.ts',
  ],
  coverageAnalysis: 'perTest',
  // Two cores, shared with other work.
  concurrency: 2,
  thresholds: { high: 95, low: 90, break: 90 },
  reporters: ['clear-text', 'progress', 'html'],
  htmlReporter: { fileName: 'reports/mutation/index.html' },
  tempDirName: '.stryker-tmp',
  // Not copied into the sandbox: the local Node (a symlink to a directory) and local data.
  ignorePatterns: ['/.tools', '/.data', '/test/bench/results'],
  cleanTempDir: true,
};
