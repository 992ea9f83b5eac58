/**
 * @bkt/exporter-oci: the `image` (local image store, registry push), `oci`
 * (OCI image layout) and `docker` (docker archive) exporters, and the pieces
 * other exporters reuse to export images (`buildImage`, `resultPlatforms`,
 * `writeOciLayout`). Layer tars of snapshots are `@bkt/oci`'s `snapshotLayer`.
 */
import type { BktPlugin } from '@bkt/core';
import { createImageExporters, type ImageExportersOptions } from './exporters.js';

// The public surface: the plugin and its options, the exporters themselves
// (for a caller that registers them its own way), and the
// stored images (list, remove, save as a tar) for `bkt images`. Attrs, image
// building, layouts and push are internal.
export { createImageExporters } from './exporters.js';
export { canonicalImageName, listStoredImages, removeStoredImage, saveStoredImage } from './stored.js';
export type { ImageStore, SaveOptions, StoredImage } from './stored.js';
export type { ImageExportersOptions } from './exporters.js';

/**
 * The plugin. An export not given `source-date-epoch` takes the result's
 * `source.date.epoch` metadata (which the solver sets from the frontend's
 * `build-arg:SOURCE_DATE_EPOCH`), as BuildKit's exporters do.
 */
export default function ociExporters(opts: ImageExportersOptions = {}): BktPlugin {
  const { exporters, close } = createImageExporters(opts);
  return {
    name: '@bkt/exporter-oci',
    exporters,
    setup({ hooks }) {
      hooks.shutdown.tapPromise('@bkt/exporter-oci', async () => close());
    },
  };
}
