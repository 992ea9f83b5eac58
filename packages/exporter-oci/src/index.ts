/**
 * @bkt/exporter-oci: the `image` (local image store, registry push), `oci`
 * (OCI image layout) and `docker` (docker archive) exporters, and the pieces
 * other exporters reuse to export images (`buildImage`, `resultPlatforms`,
 * `writeOciLayout`, `layerTar`).
 */
import type { BktPlugin } from '@bkt/core';
import { createImageExporters, type ImageExportersOptions } from './exporters.js';

export { createImageExporters, exporterResponse } from './exporters.js';
export type { ImageExportersOptions } from './exporters.js';
export { parseExportAttrs, parseSourceDateEpoch } from './attrs.js';
export type { Annotation, AnnotationTarget, ExportOptions, ExporterType } from './attrs.js';
export { buildImage, imageConfig, resultPlatforms, CONFIG_METADATA_KEY } from './image.js';
export type { BuiltImage, BuiltManifest, ImageBuildOptions, ImageLayer, ResultPlatform } from './image.js';
export { layerTar, snapshotLayer } from './layer.js';
export type { Layer, LayerOptions } from './layer.js';
export { writeDockerArchive, writeOciLayout } from './layout.js';
export type { WriteOptions } from './layout.js';
export { pushImage } from './push.js';
export { convertLayerMediaType, layerMediaType } from './media.js';

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
