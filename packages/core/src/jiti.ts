import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createJiti, type Jiti } from 'jiti';

/**
 * The entry file of the running `@bkt/core` (`src/index.ts` when run from
 * sources, `dist/index.js` when built). A config's or plugin's
 * `import … from '@bkt/core'` is aliased to it, so the config and the CLI share
 * one core (one `BktError` class, one `defineConfig`) even when the project has
 * no `@bkt/core` of its own.
 */
function runningCoreEntry(): string | undefined {
  for (const name of ['./index.ts', './index.js']) {
    const file = fileURLToPath(new URL(name, import.meta.url));
    if (existsSync(file)) return file;
  }
  return undefined;
}

/** A jiti loader rooted at `projectDir`: TypeScript and ESM/CJS interop with no build step. */
export function createProjectLoader(projectDir: string): Jiti {
  const core = runningCoreEntry();
  return createJiti(projectDir.endsWith('/') ? projectDir : `${projectDir}/`, {
    moduleCache: false,
    alias: core ? { '@bkt/core': core } : {},
  });
}
