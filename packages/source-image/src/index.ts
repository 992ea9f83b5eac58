/**
 * @bkt/source-image: the `docker-image` and `oci-layout` sources. Images are
 * resolved (tag → digest, platform from an index), their layers pulled once
 * into the content store and unpacked one snapshot per layer, so base layers
 * are shared between images and re-exported byte for byte.
 */
import type { BktPlugin } from '@bkt/core';
import { ImageSource, type ImageSourceOptions } from './source.js';

export { ImageSource, unpackImage, parseLayoutRef } from './source.js';
export type { ImageSourceOptions, ResolveMode } from './source.js';
export { resolvePlatformImage, registryBlobs, layoutBlobs, contentBlobs } from './image.js';
export type { BlobProvider, ResolvedImage } from './image.js';
export { unpackLayer, entryComponents } from './unpack.js';
export type { UnpackOptions } from './unpack.js';
export {
  addLayerSource,
  chainIds,
  readImageRecord,
  readLayerRecord,
  snapshotForChain,
  writeImageRecord,
  writeLayerRecord,
} from './records.js';
export type { ImageRecord, LayerRecord } from './records.js';

/**
 * The plugin. The source object also answers `resolveImageConfig(ref, opts,
 * ctx)` for frontends (LLBBridge.ResolveImageConfig).
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
