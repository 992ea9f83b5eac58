import { defineConfig } from 'vitest/config';

/**
 * Shared vitest settings for every package. The `source` export condition makes
 * workspace imports (`@bkt/core`, …) resolve to their TypeScript sources, so a
 * package's tests never run against a stale `dist/` of another package.
 */
export default defineConfig({
  resolve: { conditions: ['source', 'node', 'import', 'default'] },
  ssr: { resolve: { conditions: ['source', 'node', 'import', 'default'], externalConditions: ['source'] } },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
