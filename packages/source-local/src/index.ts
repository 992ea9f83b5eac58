import type { BktPlugin } from '@bkt/core';
import { createLocalSource, type LocalSourceOptions } from './source.js';

export { createLocalSource, type LocalSourceOptions } from './source.js';
export { parseLocalAttrs, type LocalAttrs } from './attrs.js';

/** The plugin: source scheme `local` (`local://NAME` = the build's local directory NAME). */
export default function localSource(opts: LocalSourceOptions = {}): BktPlugin {
  return { name: '@bkt/source-local', sources: [createLocalSource(opts)] };
}
