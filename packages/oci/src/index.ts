/**
 * @bkt/oci: the OCI facts bkt's packages share — platforms, image references,
 * media types, descriptors, manifests and image configs, digests, and layer
 * compression, layer tars: a snapshot's layer (`snapshotLayer`) and a layer
 * applied onto a tree (`unpackLayer`), shared by the image source and
 * exporters and the cache backends. One implementation of each.
 */
export { compatiblePlatforms, formatPlatform, hostPlatform, normalizePlatform, parsePlatform, platformMatcher } from './platform.js';
export type { PlatformMatcher } from './platform.js';
export { DOCKER_HUB, formatReference, normalizeReference, parseReference, repositoryName, splitReference } from './reference.js';
export type { Reference } from './reference.js';
export { MediaType, MANIFEST_MEDIA_TYPES, checkDescriptor, isIndexMediaType } from './media-types.js';
export type { Descriptor, ImageIndex, ImageManifest } from './media-types.js';
export type { HealthcheckConfig, ImageConfig, ImageHistory, ImageRuntimeConfig } from './image-config.js';
export { digestOf, digesting, isDigest } from './digest.js';
export type { DigestingStream } from './digest.js';
export { compress, compressionOfMediaType, decompress, detectCompression } from './compression.js';
export type { Compression } from './compression.js';
export { addLayerSource, applyLayerBlob, chainIds, unpackLayers, listImageRecords, readImageRecord, readLayerRecord, removeImageRecord, snapshotForChain, writeImageRecord, writeLayerRecord } from './image-store.js';
export type { ImageRecord, LayerRecord, LayerToUnpack, UnpackLayersOptions } from './image-store.js';
export { convertLayer, layerTar, recordedLayer, snapshotLayer } from './layer.js';
export type { ConvertLayerOptions, Layer, LayerOptions } from './layer.js';
export { unpackLayer } from './unpack.js';
export { encodeHeader as encodeTarHeader, TarType } from './tar-header.js';
export type { TarHeader } from './tar-header.js';
export type { UnpackOptions } from './unpack.js';
