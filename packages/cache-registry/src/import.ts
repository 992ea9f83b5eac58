/**
 * A parsed cache as the solver's `CacheImport`: records by digest, each
 * result loaded only when the build asks for it — its layers fetched (only
 * those the store lacks: a layer already in the store, found by chain id, is
 * not fetched) and made lazy snapshots, one per layer (`unpackLayers` of
 * `@bkt/oci` with `lazy`): a result's tree is made only when something uses
 * it (an exec or file op on top, a local or tar export); an image export
 * reuses the blobs as they are (each layer's blob is recorded).
 */
import { createReadStream } from 'node:fs';
import { BktError, type BuildContext, type CacheImport, type CacheMountStore, type Digest, type ImportedCacheRecord, type Snapshot } from '@bkt/core';
import { decompress, digesting, unpackLayer, unpackLayers, type Descriptor } from '@bkt/oci';
import { recordResults, ZERO_TIME, type CacheConfig } from './config.js';
import { UNCOMPRESSED_ANNOTATION } from './manifest.js';

/** Where an import's layer blobs come from. */
export interface BlobSource {
  /** `registry/repository` the blobs are in (kept with the layers, for cross-repository mounts), if any. */
  readonly repository?: string;
  /**
   * Fetches a blob the content store lacks: hands its bytes to `store`,
   * which writes them to the content store (verifying the digest).
   */
  fetch(desc: Descriptor, ctx: BuildContext, store: (bytes: AsyncIterable<Uint8Array>) => Promise<void>): Promise<void>;
}

/** How a cache is imported. */
export interface CacheImportOptions {
  /**
   * Restore the cache mounts the cache carries (`cache-mounts=true` on the
   * import): they seed the store's cache mounts of those IDs for every later
   * build, so only on the user's word. Default false.
   */
  cacheMounts?: boolean;
}

/**
 * The import of `config`. `blobs` are the layer descriptors the container
 * listed (by digest); a layer's media type, size and diff id come from
 * them or from the config's annotations.
 */
export function cacheImport(config: CacheConfig, blobs: Map<Digest, Descriptor>, source: BlobSource, description: string, opts: CacheImportOptions = {}): CacheImport {
  const byDigest = new Map<Digest, number[]>();
  config.records.forEach((r, i) => byDigest.set(r.digest, [...(byDigest.get(r.digest) ?? []), i]));

  const layer = (i: number): { blob: Descriptor; diffId: Digest; createdAt?: Date } => {
    const l = config.layers[i];
    const listed = blobs.get(l.blob);
    const mediaType = l.annotations?.mediaType ?? listed?.mediaType;
    const size = listed?.size ?? l.annotations?.size;
    const diffId = (l.annotations?.diffID ?? listed?.annotations?.[UNCOMPRESSED_ANNOTATION]) as Digest | undefined;
    if (!mediaType || size === undefined || !diffId) {
      const missing = !mediaType ? 'media type' : size === undefined ? 'size' : 'uncompressed digest (diffID)';
      throw new BktError('INVALID_ARGUMENT', `${description}: cache layer ${l.blob} has no ${missing}`);
    }
    // The time the exporter's snapshot was made (BuildKit's `createdAt`): an image of the result dates its history by it.
    const created = l.annotations?.createdAt !== undefined && l.annotations.createdAt !== ZERO_TIME ? new Date(l.annotations.createdAt) : undefined;
    return { blob: { mediaType, digest: l.blob, size }, diffId, ...(created && !Number.isNaN(created.getTime()) ? { createdAt: created } : {}) };
  };

  // One load per result, shared by the builds' vertices that need it.
  const loads = new Map<string, Promise<Snapshot | null>>();
  return {
    description,
    ...(opts.cacheMounts && config.cacheMounts?.length
      ? {
          // Cache mounts the export carried that the build declares: each made from its layer, unless the store has one of that ID.
          async restoreCacheMounts(store: CacheMountStore, ids: readonly string[], ctx: BuildContext): Promise<void> {
            for (const m of config.cacheMounts!) {
              if (!ids.includes(m.id)) continue;
              const { blob, diffId } = layer(m.layer);
              const what = `cache mount ${m.id} of ${description}`;
              await store.restoreCacheMount(
                m.id,
                async (dir) => {
                  if (!(await ctx.content.has(blob.digest))) await source.fetch(blob, ctx, async (bytes) => void (await ctx.content.write(bytes, blob.digest)));
                  const plain = digesting(decompress(createReadStream(ctx.content.path(blob.digest)), what));
                  await unpackLayer(dir, plain.chunks, { base: true, what, warn: (msg) => ctx.progress.warn(msg) });
                  if (plain.digest() !== diffId) throw new BktError('INVALID_ARGUMENT', `${what}: uncompressed content has digest ${plain.digest()}, but its diff id is ${diffId}`);
                },
                ctx,
              );
            }
          },
        }
      : {}),
    lookup(key: Digest): ImportedCacheRecord | undefined {
      for (const i of byDigest.get(key) ?? []) {
        const results = recordResults(config, i);
        if (results.length === 0) continue;
        const r = config.records[i];
        const canonical = r.canonical !== undefined ? config.records[r.canonical].digest : key;
        const { layers } = results[0];
        return {
          canonical,
          load: (ctx: BuildContext) => {
            if (layers.length === 0) return Promise.resolve(null);
            const id = layers.join(',');
            let p = loads.get(id);
            if (!p) {
              p = unpackLayers(layers.map(layer), ctx, {
                what: `cache ${description}`,
                fetch: (blob, store) => source.fetch(blob, ctx, store),
                sources: source.repository ? [source.repository] : [],
                lazy: true,
                warn: (msg) => ctx.progress.warn(msg),
              });
              // A failed load (a cancelled build) may be retried by a later one.
              p.catch(() => loads.delete(id));
              loads.set(id, p);
            }
            return p;
          },
        };
      }
      return undefined;
    },
  };
}
