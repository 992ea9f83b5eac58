/** Media types of the OCI image spec and Docker's image manifest v2 schema 2, and the descriptor shape. */
import { BktError, type Digest, type Platform } from '@bkt/core';
import { isDigest } from './digest.js';

export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciEmpty: 'application/vnd.oci.empty.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** Every manifest and index type we read, for `Accept`. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  MediaType.OciIndex,
  MediaType.DockerManifestList,
  MediaType.OciManifest,
  MediaType.DockerManifest,
];

/** True for an image index or a Docker manifest list. */
export function isIndexMediaType(mediaType: string): boolean {
  return mediaType === MediaType.OciIndex || mediaType === MediaType.DockerManifestList;
}

/** An OCI content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  /** OCI 1.1: the type of an artifact a manifest describes. */
  artifactType?: string;
}

/** The JSON of an image manifest (OCI or Docker schema 2). */
export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** The JSON of an image index or Docker manifest list. */
export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** RFC 6838 `type/subtype` (parameters not allowed), as the image spec's descriptor `mediaType`. */
const MEDIA_TYPE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

/**
 * Checks a descriptor read from a manifest or an index, as the image spec
 * requires of one: a `mediaType` of RFC 6838 shape, a valid `digest`, and a
 * `size` that is a non-negative integer (the byte count a download is held
 * to). Throws `INVALID_ARGUMENT` naming `what` (e.g. `layer 2 of manifest
 * sha256:…`) and the field.
 */
export function checkDescriptor(d: unknown, what: string): Descriptor {
  const invalid = (why: string, field: string) => new BktError('INVALID_ARGUMENT', `${what}: invalid descriptor: ${why}`, { attribute: field });
  if (typeof d !== 'object' || d === null || Array.isArray(d)) throw invalid('not a JSON object', 'descriptor');
  const { mediaType, digest, size } = d as Record<string, unknown>;
  if (typeof mediaType !== 'string' || !MEDIA_TYPE_PATTERN.test(mediaType)) {
    throw invalid(`mediaType ${JSON.stringify(mediaType)} is not a media type`, 'mediaType');
  }
  if (typeof digest !== 'string' || !isDigest(digest)) throw invalid(`digest ${JSON.stringify(digest)} is not a digest`, 'digest');
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`size ${JSON.stringify(size)} of ${digest} is not a non-negative integer`, 'size');
  }
  return d as Descriptor;
}
