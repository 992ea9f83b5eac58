/** Media types of the images bkt writes: OCI, or Docker's schema 2 (`oci-mediatypes=false`). */
import { BktError } from '@bkt/core';
import { MediaType, compressionOfMediaType, type Compression } from '@bkt/oci';

/** The media type of a layer blob of `compression`. Docker's types have no zstd. */
export function layerMediaType(compression: Compression, oci: boolean): string {
  if (oci) return ({ gzip: MediaType.OciLayerGzip, zstd: MediaType.OciLayerZstd, uncompressed: MediaType.OciLayer } as Record<Compression, string>)[compression];
  if (compression === 'zstd') throw new BktError('INVALID_ARGUMENT', 'zstd layers need OCI media types (oci-mediatypes=true)', { attribute: 'compression' });
  return compression === 'gzip' ? MediaType.DockerLayerGzip : MediaType.DockerLayer;
}

/** The same layer blob under the other family's media type (the bytes do not change). */
export function convertLayerMediaType(mediaType: string, oci: boolean): string {
  const compression = compressionOfMediaType(mediaType);
  if (!compression) return mediaType; // foreign layers and others stay as they are
  return layerMediaType(compression, oci);
}

export const manifestMediaType = (oci: boolean) => (oci ? MediaType.OciManifest : MediaType.DockerManifest);
export const indexMediaType = (oci: boolean) => (oci ? MediaType.OciIndex : MediaType.DockerManifestList);
export const configMediaType = (oci: boolean) => (oci ? MediaType.OciConfig : MediaType.DockerConfig);
