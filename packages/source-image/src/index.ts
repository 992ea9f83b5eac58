/**
 * @bkt/source-image: the `docker-image` and `oci-layout` sources. Images are
 * resolved (tag → digest, platform from an index), their layers pulled once
 * into the content store and unpacked one snapshot per layer, so base layers
 * are shared between images and re-exported byte for byte. What it
 * remembers about images (layer, chain and named-image records) is the local
 * image store of `@bkt/oci`, kept in the store's records API.
 */
import type { BktPlugin } from '@bkt/core';
import { ImageSource, type ImageSourceOptions } from './source.js';

export { ImageSource } from './source.js';
export type { ImageSourceOptions, ResolveMode } from './source.js';

/**
 * The plugin. Its source is also the build's `ImageConfigResolver` (see
 * `@bkt/core`), which answers frontends' `resolveImageConfig`
 * (LLBBridge.ResolveImageConfig).
 */
export default function imageSource(opts: ImageSourceOptions = {}): BktPlugin {
  const source = new ImageSource(opts);
  return {
    name: '@bkt/source-image',
    sources: [source],
    setup({ hooks }) {
      hooks.shutdown.tapPromise('@bkt/source-image', async () => source.close());
    },
  };
}
