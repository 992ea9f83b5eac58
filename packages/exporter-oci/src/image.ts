/**
 * Builds the image of a build result: one manifest per platform (an index
 * over them for a multi-platform result), its config and layers, all written
 * to the content store. Nothing leaves the machine here (see push.ts, layout.ts).
 *
 * Layers: one per snapshot of the result's chain, base first. A snapshot
 * unpacked from a pulled layer reuses that blob byte for byte (only the media
 * type follows `oci-mediatypes`), unless `force-compression` asks for another
 * compression (see `layerOf`); any other snapshot becomes a new layer
 * (`snapshotLayer` of @bkt/oci) of the asked compression.
 *
 * Config: the frontend's (`containerimage.config` metadata, per platform
 * `containerimage.config/<os/arch>`), else a default for the platform; with
 * `rootfs.diff_ids` set from the layers and `history` made to list exactly one
 * non-empty entry per layer. SOURCE_DATE_EPOCH sets `created` of the config
 * and of history entries newer than it.
 */
import { BktError, INLINE_CACHE_CONFIG_KEY, INLINE_CACHE_METADATA_KEY, requireRecords, type BuildContext, type BuildResult, type Digest, type Platform, type Snapshot } from '@bkt/core';
import {
  digestOf,
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  parsePlatform,
  type Descriptor,
  type ImageConfig,
  type ImageHistory,
  readLayerRecord,
  recordedLayer,
  snapshotLayer,
} from '@bkt/oci';
import type { Annotation, ExportOptions } from './attrs.js';
import { configMediaType, convertLayerMediaType, indexMediaType, manifestMediaType } from './media.js';

/** Where the frontend puts the image config of a single-platform result. */
export const CONFIG_METADATA_KEY = 'containerimage.config';

/** One platform of a result: its tree and the config the frontend made for it. */
export interface ResultPlatform {
  /** The `refs` key (`linux/amd64`), or undefined for a single-platform result. */
  key?: string;
  platform: Platform;
  snapshot: Snapshot | null;
  /** The frontend's image config JSON, when it gave one. */
  config?: Uint8Array;
}

/**
 * The platforms of a result, for the image exporters and for `tar`/`local`
 * exporters that export images: `refs` (keyed by `os/arch[/variant]`) when
 * the result has any, else `ref` for the host platform (or the platform of the
 * frontend's config).
 */
export function resultPlatforms(result: BuildResult): ResultPlatform[] {
  const refs = Object.entries(result.refs ?? {});
  if (refs.length > 0) {
    return refs.map(([key, snapshot]) => {
      const config = result.metadata[`${CONFIG_METADATA_KEY}/${key}`];
      return { key, platform: platformOf(config) ?? parsePlatform(key), snapshot, config };
    });
  }
  const config = result.metadata[CONFIG_METADATA_KEY];
  return [{ platform: platformOf(config) ?? hostPlatform(), snapshot: result.ref, config }];
}

function platformOf(config: Uint8Array | undefined): Platform | undefined {
  if (!config) return undefined;
  const c = parseConfig(config);
  return c.os && c.architecture ? normalizePlatform({ os: c.os, architecture: c.architecture, variant: c.variant }) : undefined;
}

function parseConfig(bytes: Uint8Array): Partial<ImageConfig> {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<ImageConfig>;
  } catch {
    throw new BktError('INVALID_ARGUMENT', `the result's ${CONFIG_METADATA_KEY} metadata is not valid JSON`, { attribute: CONFIG_METADATA_KEY });
  }
}

/** A layer of a built image. */
export interface ImageLayer {
  descriptor: Descriptor;
  diffId: Digest;
  /** `registry/repository` names the blob is known to be in (cross-repository mounts). */
  sources: string[];
  /** The snapshot it was made from or unpacked into. */
  snapshotId: string;
  /** When that snapshot was committed (dates the layer's history entry when the entry has no date). */
  createdAt?: Date;
}

export interface BuiltManifest {
  platform: Platform;
  /** The manifest's descriptor (with `platform`, as an index lists it). */
  descriptor: Descriptor;
  config: Descriptor;
  layers: ImageLayer[];
}

export interface BuiltImage {
  /** The manifest of a single-platform result, else the index. */
  root: Descriptor;
  manifests: BuiltManifest[];
  /** Every blob of the image in push order: layers, configs, manifests, then the index. */
  blobs: Descriptor[];
  /**
   * The bytes of the configs, manifests and index, by digest, when they were
   * not written to the content store (`storeMetadata: false`); every other
   * blob is in the content store.
   */
  metadata?: Map<Digest, Uint8Array>;
}

export type ImageBuildOptions = Pick<
  ExportOptions,
  'compression' | 'compressionLevel' | 'forceCompression' | 'ociMediaTypes' | 'annotations' | 'rewriteTimestamp' | 'sourceDateEpoch'
> & {
  noLayerCache?: boolean;
  /**
   * Write the configs, manifests and index to the content store (default
   * true); false keeps them in `BuiltImage.metadata` only, for an export that
   * writes them out itself and stores nothing (a layout or archive).
   */
  storeMetadata?: boolean;
};

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The snapshots from the base layer up to `top`. */
async function chainOf(top: Snapshot | null, ctx: Pick<BuildContext, 'snapshotter'>): Promise<Snapshot[]> {
  const chain: Snapshot[] = [];
  for (let s: Snapshot | null = top; s; s = s.parent ? await ctx.snapshotter.get(s.parent) : null) chain.unshift(s);
  return chain;
}

/** Layers computed at once: each one's tar walk and reads overlap the others' compression. */
const LAYER_CONCURRENCY = 3;

async function layersOf(top: Snapshot | null, ctx: Pick<BuildContext, 'root' | 'content' | 'snapshotter' | 'records'>, opts: ImageBuildOptions): Promise<ImageLayer[]> {
  const chain = await chainOf(top, ctx);
  const layers: ImageLayer[] = new Array(chain.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < chain.length; i = next++) layers[i] = await layerOf(chain[i], ctx, opts);
  };
  await Promise.all(Array.from({ length: Math.min(LAYER_CONCURRENCY, chain.length) }, worker));
  return layers;
}

/**
 * The layer of one snapshot of the chain. A snapshot unpacked from a layer
 * blob reuses it (a media type that is no layer tar's, as it is), except
 * where `force-compression` asks for another compression, or where the blob
 * is an uncompressed tar no registry is known to hold (an image of the local
 * store unpacked again, a layout's) and the export asks for a compression:
 * then the same tar is compressed as asked, once (`recordedLayer` of `@bkt/oci`), as
 * docker's push compresses its store's layers. Any other snapshot becomes a
 * new layer.
 */
async function layerOf(s: Snapshot, ctx: Pick<BuildContext, 'root' | 'content' | 'snapshotter' | 'records'>, opts: ImageBuildOptions): Promise<ImageLayer> {
  const clampMtime = opts.rewriteTimestamp ? opts.sourceDateEpoch : undefined;
  const rec = await readLayerRecord(requireRecords(ctx, '@bkt/exporter-oci'), s.id);
  if (rec && (await ctx.content.has(rec.blob.digest))) {
    const { layer, converted } = await recordedLayer(rec, ctx, {
      compression: opts.compression,
      compressionLevel: opts.compressionLevel,
      forceCompression: opts.forceCompression,
      snapshotId: s.id,
    });
    return {
      descriptor: { mediaType: convertLayerMediaType(layer.descriptor.mediaType, opts.ociMediaTypes), digest: layer.descriptor.digest, size: layer.descriptor.size },
      diffId: rec.diffId,
      sources: converted ? [] : rec.sources,
      snapshotId: s.id,
      ...(s.createdAt ? { createdAt: s.createdAt } : {}),
    };
  }
  const layer = await snapshotLayer(s, ctx, {
    compression: opts.compression,
    compressionLevel: opts.compressionLevel,
    clampMtime,
    noCache: opts.noLayerCache,
  });
  return {
    descriptor: { ...layer.descriptor, mediaType: convertLayerMediaType(layer.descriptor.mediaType, opts.ociMediaTypes) },
    diffId: layer.diffId,
    sources: [],
    snapshotId: s.id,
    ...(s.createdAt ? { createdAt: s.createdAt } : {}),
  };
}

function isoOf(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/**
 * `history` with exactly one non-empty entry per layer: surplus non-empty
 * entries (from the end) become empty, missing ones are added at the end.
 */
function normalizeHistory(history: ImageHistory[], layerCount: number): ImageHistory[] {
  const out = history.map((h) => ({ ...h }));
  let nonEmpty = out.filter((h) => !h.empty_layer).length;
  for (let i = out.length - 1; i >= 0 && nonEmpty > layerCount; i--) {
    if (!out[i].empty_layer) {
      out[i].empty_layer = true;
      nonEmpty--;
    }
  }
  while (nonEmpty < layerCount) {
    out.push({ created_by: 'bkt: layer without history', comment: 'bkt.exporter' }); // dated by `datedHistory`
    nonEmpty++;
  }
  return out;
}

/**
 * `history` (one non-empty entry per layer) with a date on every entry, as
 * BuildKit's image exporter dates it: a layer's entry without one gets its
 * snapshot's commit time (`now` when unknown); then each undated entry gets
 * the first date that follows an undated entry (a new layer's, not the base
 * image's), or the one of the dated entry before it. A rebuild from the cache
 * dates alike, so it makes the same image.
 */
function datedHistory(history: ImageHistory[], layers: ImageLayer[], now: string): ImageHistory[] {
  let layer = 0;
  const out = history.map((h) => {
    if (h.empty_layer) return h;
    const l = layers[layer++];
    return h.created !== undefined ? h : { ...h, created: l?.createdAt ? l.createdAt.toISOString() : now };
  });
  let fill: string | undefined;
  let undated = false;
  for (const h of out) {
    if (h.created === undefined) undated = true;
    else {
      fill = h.created;
      if (undated) break;
    }
  }
  undated = false;
  return out.map((h) => {
    if (h.created !== undefined) {
      if (undated) fill = h.created;
      return h;
    }
    undated = true;
    return fill !== undefined ? { ...h, created: fill } : h;
  });
}

/** The image config bytes for one platform. */
export function imageConfig(p: ResultPlatform, layers: ImageLayer[], opts: Pick<ImageBuildOptions, 'sourceDateEpoch'> & { inlineCache?: Uint8Array }): Uint8Array {
  const given = p.config ? parseConfig(p.config) : undefined;
  const now = new Date().toISOString();
  const epochIso = opts.sourceDateEpoch !== undefined ? isoOf(opts.sourceDateEpoch) : undefined;
  const config: Record<string, unknown> = given
    ? { ...given }
    : {
        architecture: p.platform.architecture,
        os: p.platform.os,
        ...(p.platform.variant ? { variant: p.platform.variant } : {}),
        config: { Env: [DEFAULT_PATH], WorkingDir: '/' },
      };
  config.architecture ??= p.platform.architecture;
  config.os ??= p.platform.os;
  if (p.platform.variant && config.variant === undefined) config.variant = p.platform.variant;
  config.rootfs = { type: 'layers', diff_ids: layers.map((l) => l.diffId) };
  let history = datedHistory(normalizeHistory((given?.history as ImageHistory[] | undefined) ?? [], layers.length), layers, now);
  if (opts.sourceDateEpoch !== undefined) {
    const limit = opts.sourceDateEpoch * 1000;
    history = history.map((h) => (h.created === undefined || Date.parse(h.created) > limit ? { ...h, created: epochIso } : h));
  }
  // The config's date: the epoch, the frontend's, else its last history entry's (as BuildKit's exporter); none when
  // nothing is dated (an image of no layer: BuildKit writes null there), so its digest does not change with the time.
  const created = epochIso ?? (typeof config.created === 'string' ? config.created : history.findLast((h) => h.created !== undefined)?.created);
  if (created !== undefined) config.created = created;
  else delete config.created;
  config.history = history;
  // An inline cache (--cache-to type=inline): its records, base64, under BuildKit's key.
  if (opts.inlineCache) config[INLINE_CACHE_CONFIG_KEY] = Buffer.from(opts.inlineCache).toString('base64');
  else delete config[INLINE_CACHE_CONFIG_KEY];
  return Buffer.from(JSON.stringify(config));
}

function annotationsFor(all: Annotation[], target: Annotation['target'], platform?: Platform): Record<string, string> | undefined {
  const id = platform ? formatPlatform(normalizePlatform(platform)) : undefined;
  const out: Record<string, string> = {};
  for (const a of all) {
    if (a.target !== target) continue;
    if (a.platform && (!id || formatPlatform(parsePlatform(a.platform)) !== id)) continue;
    out[a.key] = a.value;
  }
  return Object.keys(out).length ? out : undefined;
}

/** Builds the image of `result` into the content store. */
export async function buildImage(
  result: BuildResult,
  ctx: Pick<BuildContext, 'root' | 'content' | 'snapshotter' | 'records'>,
  opts: ImageBuildOptions,
): Promise<BuiltImage> {
  const platforms = resultPlatforms(result);
  const multi = Object.keys(result.refs ?? {}).length > 0;
  if (!opts.ociMediaTypes && opts.annotations.length > 0) {
    throw new BktError('INVALID_ARGUMENT', 'annotations need OCI media types (oci-mediatypes=true)', { attribute: `annotation.${opts.annotations[0].key}` });
  }
  const blobs: Descriptor[] = [];
  const seen = new Set<string>();
  const add = (d: Descriptor) => {
    if (!seen.has(d.digest)) {
      seen.add(d.digest);
      blobs.push({ mediaType: d.mediaType, digest: d.digest, size: d.size });
    }
  };
  const manifests: BuiltManifest[] = [];
  const manifestBlobs: Descriptor[] = [];
  const metadata = opts.storeMetadata === false ? new Map<Digest, Uint8Array>() : undefined;
  /** Writes a config, manifest or index: to the content store, or kept in `metadata`. */
  const writeMetadata = async (bytes: Uint8Array): Promise<{ digest: Digest; size: number }> => {
    if (!metadata) return ctx.content.write(bytes);
    const digest = digestOf(bytes);
    metadata.set(digest, bytes);
    return { digest, size: bytes.length };
  };
  for (const p of platforms) {
    const layers = await layersOf(p.snapshot, ctx, opts);
    // The inline cache describes a single-platform result's layers.
    const inline = multi ? undefined : result.metadata[INLINE_CACHE_METADATA_KEY];
    const configBytes = imageConfig(p, layers, { ...opts, ...(inline ? { inlineCache: inline } : {}) });
    const config: Descriptor = { mediaType: configMediaType(opts.ociMediaTypes), ...(await writeMetadata(configBytes)) };
    const manifest: Record<string, unknown> = {
      schemaVersion: 2,
      mediaType: manifestMediaType(opts.ociMediaTypes),
      config,
      layers: layers.map((l) => l.descriptor),
    };
    const ann = annotationsFor(opts.annotations, 'manifest', p.platform);
    if (ann) manifest.annotations = ann;
    const bytes = Buffer.from(JSON.stringify(manifest));
    await writeMetadata(bytes);
    const descriptor: Descriptor = { mediaType: manifest.mediaType as string, digest: digestOf(bytes), size: bytes.length };
    if (multi) descriptor.platform = p.platform;
    const descAnn = annotationsFor(opts.annotations, 'manifest-descriptor', p.platform);
    if (descAnn) descriptor.annotations = descAnn;
    layers.forEach((l) => add(l.descriptor));
    add(config);
    manifestBlobs.push(descriptor);
    manifests.push({ platform: p.platform, descriptor, config, layers });
  }
  manifestBlobs.forEach(add);
  if (!multi) return { root: manifests[0].descriptor, manifests, blobs, ...(metadata ? { metadata } : {}) };

  const index: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: indexMediaType(opts.ociMediaTypes),
    manifests: manifests.map((m) => m.descriptor),
  };
  const ann = annotationsFor(opts.annotations, 'index');
  if (ann) index.annotations = ann;
  const bytes = Buffer.from(JSON.stringify(index));
  await writeMetadata(bytes);
  const root: Descriptor = { mediaType: index.mediaType as string, digest: digestOf(bytes), size: bytes.length };
  const rootAnn = annotationsFor(opts.annotations, 'index-descriptor');
  if (rootAnn) root.annotations = rootAnn;
  add(root);
  return { root, manifests, blobs, ...(metadata ? { metadata } : {}) };
}
