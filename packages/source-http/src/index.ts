import type { BktPlugin } from '@bkt/core';
import { createHttpSource } from './source.js';

export { createHttpSource } from './source.js';

/** The plugin: source schemes `https` and `http`. A download a build did not use is removed when the build finishes. */
export default function httpSource(): BktPlugin {
  return { name: '@bkt/source-http', sources: [createHttpSource()] };
}
