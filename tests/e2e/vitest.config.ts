import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import shared from '../../vitest.shared.js';

/**
 * End-to-end tests: they spawn the BUILT CLI (`node packages/cli/bin/bkt.js`),
 * so run `npm run build` first. Real files, real overlay mounts, a temp
 * `--root` per test. Run from anywhere: `npm run test:e2e`.
 */
export default defineConfig({
  ...shared,
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    ...shared.test,
    include: ['tests/e2e/**/*.test.ts'],
    // Scratch space of tests (and copies of the repository made there) is never a test.
    exclude: ['**/node_modules/**', 'tests/e2e/.tmp/**'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    // Builds share the machine's cores with other test runs: one file at a time.
    fileParallelism: false,
  },
});
