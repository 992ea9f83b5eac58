/**
 * The cache seam: what the solver gives a cache exporter (the build's cache
 * chain) and what a cache importer gives the solver (records it matches keys
 * against, each with a lazy way to make its result). The solver keeps the
 * keys and matching; a backend keeps the format and the transport.
 */
import type { BuildContext, Digest, Snapshot } from './types.js';

/** One input of a record: the record (an index into `CacheChain.records`) that satisfied it. */
export interface CacheChainInput {
  record: number;
  /** BuildKit's selector of the link (e.g. a path the op reads); keys here are matched by digest alone. */
  selector?: string;
}

/**
 * One vertex output of a build, under one of its cache keys. A vertex whose
 * op reads inputs by content has two keys (the definition-based "fast" key
 * and the content-based "slow" one); each is a record, and the fast one names
 * the slow one as its `canonical`.
 */
export interface CacheChainRecord {
  /** The cache key (BuildKit's record digest). */
  key: Digest;
  /** The vertex and output it is the result of. */
  vertex: { digest: Digest; name: string; output: number };
  /** For each input of the vertex, the records that satisfy it. */
  inputs: CacheChainInput[][];
  /** The record whose key downstream keys are built from, when not this one. */
  canonical?: number;
  /**
   * Whether the result may leave the store: false for results whose content
   * is the client's own files (`local://` sources), which an import re-reads.
   */
  exportable: boolean;
  /**
   * The result: its snapshot (null: an empty result), or undefined when this
   * store has none for it (an imported result the build never needed). The
   * snapshot stays in use until the build finishes.
   */
  result(): Promise<Snapshot | null | undefined>;
}

/** The cache chain of one build, as the solver hands it to cache exporters. */
export interface CacheChain {
  records: CacheChainRecord[];
  /** The records of the build's final result(s) (`BuildResult.ref` and `refs`); empty for an empty result. */
  results: number[];
  /** The cache mounts the build's exec steps use (by cache ID), and the store that keeps them, when its exec executor is one. */
  cacheMounts?: { ids: string[]; store: CacheMountStore };
}

/** A result an import holds for a cache key. */
export interface ImportedCacheRecord {
  /** The key downstream keys are built from (the record's own, or the content-based key a fast key stands for). */
  canonical: Digest;
  /**
   * Makes the result: fetches the blobs of its layers that the store lacks
   * (only those) and unpacks them. null: an empty result.
   */
  load(ctx: BuildContext): Promise<Snapshot | null>;
}

/** The records of one cache import, as the solver matches keys against them. */
export interface CacheImport {
  /** Where they came from (`registry ref`, `local dir`), for progress and explanations. */
  readonly description: string;
  /** The result recorded under `key`, if any. */
  lookup(key: Digest): ImportedCacheRecord | undefined;
  /**
   * Restores into `store` those of the cache mounts the import carries
   * (`cache-mounts=true`) whose IDs are in `ids` — the ones the build's exec
   * steps declare; the solver calls it as the build's definitions load,
   * before any step using them runs (each ID once per build).
   */
  restoreCacheMounts?(store: CacheMountStore, ids: readonly string[], ctx: BuildContext): Promise<void>;
}

/** The metadata key under which the solver hands an image exporter the inline cache (BuildKit's `exptypes.ExporterInlineCache`). */
export const INLINE_CACHE_METADATA_KEY = 'containerimage.inlinecache';

/**
 * The image config key BuildKit's inline cache lives under: a base64 JSON
 * array of cacheconfig records whose results index the image's layers.
 */
export const INLINE_CACHE_CONFIG_KEY = 'moby.buildkit.cache.v0';

/**
 * Cache mounts (`RUN --mount=type=cache`) as a cache export carries them
 * (`cache-mounts=true`): the exec executor that keeps them declares this
 * capability (`isCacheMountStore`). Mounts are named by their cache ID.
 */
export interface CacheMountStore {
  /** The directory of cache mount `id` (its shared instance), in use until `release`; undefined when the store has none. */
  openCacheMount(id: string, ctx: BuildContext): Promise<{ path: string; release(): Promise<void> } | undefined>;
  /**
   * Makes cache mount `id` from an import unless the store has one:
   * `fill(dir)` writes its files into the new, empty directory. Returns
   * whether it made it (a store's own cache mount is never replaced).
   */
  restoreCacheMount(id: string, fill: (dir: string) => Promise<void>, ctx: BuildContext): Promise<boolean>;
}

export function isCacheMountStore(x: unknown): x is CacheMountStore {
  return typeof x === 'object' && x !== null && typeof (x as CacheMountStore).openCacheMount === 'function' && typeof (x as CacheMountStore).restoreCacheMount === 'function';
}
