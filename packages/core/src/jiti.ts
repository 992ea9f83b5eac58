import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Jiti } from 'jiti';

/**
 * The entry file of the running `@bkt/core` (`src/index.ts` when run from
 * sources, `dist/index.js` when built). A config's or plugin's
 * `import … from '@bkt/core'` is aliased to it, so the config and the CLI share
 * one core (one `BktError` class, one `defineConfig`) even when the project has
 * no `@bkt/core` of its own.
 */
export function runningCoreEntry(): string | undefined {
  for (const name of ['./index.ts', './index.js']) {
    const file = fileURLToPath(new URL(name, import.meta.url));
    if (existsSync(file)) return file;
  }
  return undefined;
}

/**
 * A jiti loader rooted at `projectDir`: TypeScript and ESM/CJS interop with no build step.
 * jiti itself is imported here, on first use, not when `@bkt/core` is imported: it costs
 * tens of milliseconds of start-up that a build with a JSON config (or none) never needs.
 */
export async function createProjectLoader(projectDir: string): Promise<Jiti> {
  // Required, not imported: jiti is CommonJS, and an ESM import of it has Node parse its whole bundle for export names first.
  const { createJiti } = createRequire(import.meta.url)(jitiEntry()) as typeof import('jiti');
  const core = runningCoreEntry();
  return createJiti(projectDir.endsWith('/') ? projectDir : `${projectDir}/`, {
    moduleCache: false,
    alias: core ? { '@bkt/core': core } : {},
  });
}

/** The file `require('jiti')` loads for `@bkt/core`. */
export function jitiEntry(): string {
  return createRequire(import.meta.url).resolve('jiti');
}
