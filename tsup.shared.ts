import { defineConfig, type Options } from 'tsup';

/**
 * The build every package shares: ESM for Node 20 with declarations and source
 * maps. A package passes only what differs (more entries, externals).
 */
export function packageConfig(overrides: Options = {}) {
  return defineConfig({
    entry: ['src/index.ts'],
    format: ['esm'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    ...overrides,
  });
}
