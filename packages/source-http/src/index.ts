import { rm } from 'node:fs/promises';
import type { BktPlugin } from '@bkt/core';
import { createHttpSource } from './source.js';

export { createHttpSource } from './source.js';

/** The plugin: source schemes `https` and `http`. Downloads a build did not use are removed after it. */
export default function httpSource(): BktPlugin {
  const downloads = new Map<string, Set<string>>();
  const removeAll = async (paths: Iterable<string>) => {
    for (const p of paths) await rm(p, { force: true });
  };
  return {
    name: '@bkt/source-http',
    sources: [createHttpSource(downloads)],
    setup({ hooks }) {
      hooks.afterSolve.tapPromise('@bkt/source-http', async ({ buildId }) => {
        await removeAll(downloads.get(buildId) ?? []);
        downloads.delete(buildId);
      });
      hooks.shutdown.tapPromise('@bkt/source-http', async () => {
        for (const paths of downloads.values()) await removeAll(paths);
        downloads.clear();
      });
    },
  };
}
