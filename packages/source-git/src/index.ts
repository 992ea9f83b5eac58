import type { BktPlugin } from '@bkt/core';
import { createGitSource } from './source.js';

export { createGitSource } from './source.js';

/** The plugin: source scheme `git`. */
export default function gitSource(): BktPlugin {
  return { name: '@bkt/source-git', sources: [createGitSource()] };
}
