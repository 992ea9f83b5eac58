/**
 * The containers of a cache config: an OCI image manifest whose config is
 * the cache config (`image-manifest=true`, BuildKit's default since v0.21),
 * or the legacy index whose entries are the layer blobs and the config
 * (`image-manifest=false`). An image (manifest, or an index of platforms)
 * carrying an inline cache is told apart, for the inline importer.
 */
import { BktError, INLINE_CACHE_CONFIG_KEY, type Digest } from '@bkt/core';
import { checkDescriptor, isIndexMediaType, MediaType, platformMatcher, hostPlatform, type Descriptor } from '@bkt/oci';
import { CACHE_CONFIG_MEDIA_TYPE, type CacheConfig } from './config.js';

/** Layer descriptor annotations BuildKit writes and reads. */
export const UNCOMPRESSED_ANNOTATION = 'containerd.io/uncompressed';
export const CREATED_AT_ANNOTATION = 'buildkit/createdat';

export interface CacheManifestOptions {
  /** An OCI image manifest (default) or the legacy index. */
  imageManifest: boolean;
  /** OCI media types (default) or Docker's (legacy index form only). */
  ociMediaTypes: boolean;
}

/** The manifest of a cache: `config` is the cache config blob, `layers` its layer blobs in `config.layers` order. */
export function cacheManifest(config: Descriptor, layers: Descriptor[], opts: CacheManifestOptions): { mediaType: string; bytes: Uint8Array } {
  if (opts.imageManifest) {
    const doc = { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers };
    return { mediaType: MediaType.OciManifest, bytes: new TextEncoder().encode(JSON.stringify(doc)) };
  }
  const mediaType = opts.ociMediaTypes ? MediaType.OciIndex : MediaType.DockerManifestList;
  const doc = { schemaVersion: 2, mediaType, manifests: [...layers, config] };
  return { mediaType, bytes: new TextEncoder().encode(JSON.stringify(doc)) };
}

/** The layer descriptors of `config`, in its layer order, from what the blobs are known as. */
export function layerDescriptors(config: CacheConfig, known: Map<Digest, Descriptor>): Descriptor[] {
  return config.layers.map((l) => {
    const d = known.get(l.blob);
    if (!d) throw new BktError('INTERNAL', `cache layer ${l.blob} has no descriptor`);
    return d;
  });
}

/** What a fetched manifest is, for an importer. */
export type CacheContainer =
  | { kind: 'cache'; config: Descriptor; layers: Descriptor[] }
  | { kind: 'image'; manifest: Descriptor }
  | { kind: 'index'; manifests: Descriptor[] };

/**
 * Tells a fetched manifest's form: a cache (either container), an image
 * manifest (maybe with an inline cache in its config), or an image index
 * (its platform manifests). `what` names it in errors.
 */
export function readCacheContainer(bytes: Uint8Array, mediaType: string | undefined, what: string): CacheContainer {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `${what}: the manifest is not JSON (${(err as Error).message})`);
  }
  const type = (typeof doc.mediaType === 'string' ? doc.mediaType : undefined) ?? mediaType ?? '';
  if (Array.isArray(doc.manifests) || isIndexMediaType(type)) {
    const entries = (Array.isArray(doc.manifests) ? doc.manifests : []).map((d, i) => checkDescriptor(d, `${what}: manifests[${i}]`));
    const configs = entries.filter((d) => d.mediaType === CACHE_CONFIG_MEDIA_TYPE);
    if (configs.length > 1) throw new BktError('INVALID_ARGUMENT', `${what}: the cache index lists ${configs.length} cache configs (want one)`);
    if (configs.length === 1) return { kind: 'cache', config: configs[0], layers: entries.filter((d) => d !== configs[0]) };
    return { kind: 'index', manifests: entries };
  }
  if (typeof doc.config !== 'object' || doc.config === null) {
    throw new BktError('INVALID_ARGUMENT', `${what}: neither a cache manifest nor an image (no config, no manifests)`);
  }
  const config = checkDescriptor(doc.config, `${what}: config`);
  const layers = (Array.isArray(doc.layers) ? doc.layers : []).map((d, i) => checkDescriptor(d, `${what}: layers[${i}]`));
  if (config.mediaType === CACHE_CONFIG_MEDIA_TYPE) return { kind: 'cache', config, layers };
  return { kind: 'image', manifest: { mediaType: type, digest: '' as Digest, size: bytes.length } };
}

/** The manifest of an image index for this machine's platform (an inline cache is per platform). */
export function hostManifest(manifests: Descriptor[], what: string): Descriptor {
  const m = platformMatcher(hostPlatform());
  const candidates = manifests.filter((d) => d.platform && m.matches(d.platform)).sort((a, b) => m.compare(a.platform!, b.platform!));
  if (candidates.length === 0) throw new BktError('NOT_FOUND', `${what}: no cache config and no image for this platform in the index`);
  return candidates[0];
}

/** The inline cache of an image config (BuildKit's `moby.buildkit.cache.v0`): the records JSON, or undefined. */
export function inlineCacheOf(imageConfig: Uint8Array, what: string): Uint8Array | undefined {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(Buffer.from(imageConfig).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `${what}: the image config is not JSON (${(err as Error).message})`);
  }
  const v = doc[INLINE_CACHE_CONFIG_KEY];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new BktError('INVALID_ARGUMENT', `${what}: ${INLINE_CACHE_CONFIG_KEY} is not a base64 string`);
  return Buffer.from(v, 'base64');
}
