/**
 * @bkt/exporter-oci: the `image` (local image store, registry push), `oci`
 * (OCI image layout) and `docker` (docker archive) exporters, and the pieces
 * other exporters reuse to export images (`buildImage`, `resultPlatforms`,
 * `writeOciLayout`, `layerTar`).
 */
import type { BktPlugin } from '@bkt/core';
import { parseSourceDateEpoch } from './attrs.js';
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
 * The plugin. It remembers each build's `build-arg:SOURCE_DATE_EPOCH`
 * frontend attribute (through `beforeSolve`) for exporters not given
 * `source-date-epoch`, as BuildKit passes it from the frontend to exporters.
 */
export default function ociExporters(opts: Omit<ImageExportersOptions, 'sourceDateEpoch'> = {}): BktPlugin {
  const epochs = new Map<string, number>();
  const { exporters, close } = createImageExporters({ ...opts, sourceDateEpoch: (buildId) => epochs.get(buildId) });
  return {
    name: '@bkt/exporter-oci',
    exporters,
    setup({ hooks }) {
      hooks.beforeSolve.tap('@bkt/exporter-oci', (definition, info) => {
        const v = info.frontendAttrs['build-arg:SOURCE_DATE_EPOCH'];
        if (v !== undefined && v !== '') epochs.set(info.buildId, parseSourceDateEpoch(v, 'build-arg:SOURCE_DATE_EPOCH'));
        return definition;
      });
      hooks.afterSolve.tap('@bkt/exporter-oci', (summary) => void epochs.delete(summary.buildId));
      hooks.shutdown.tapPromise('@bkt/exporter-oci', async () => close());
    },
  };
}
