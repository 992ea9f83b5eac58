/**
 * @bkt/cache-registry: cache export and import in BuildKit's format
 * (`application/vnd.buildkit.cacheconfig.v0`) — the `registry`, `local` and
 * `inline` cache backends, registered in the core's `cacheBackends`.
 */
import { BktError, isBktError, type BktPlugin, type BuildContext, type CacheBackend, type CacheExporterInstance } from '@bkt/core';
import type { RegistryClient, RegistrySettings } from '@bkt/registry';
import { parseExportAttrs, parseImportAttrs, type BackendType, type ExportAttrs } from './attrs.js';
import { exportCache } from './export.js';
import { inlineRecords } from './inline.js';
import { exportToLocal, importFromLocal } from './local.js';
import { exportToRegistry, importFromRegistry, SharedRegistry } from './registry.js';

export { CACHE_CONFIG_MEDIA_TYPE, mergeCacheConfigs, normalizeCacheConfig, parseCacheConfig, recordResults, serializeCacheConfig } from './config.js';
export type { CacheConfig, CacheConfigRecord, CacheInput, CacheLayer, CacheLayerAnnotations, CacheResult, ChainedResult } from './config.js';
export { localCacheDirName, readLayoutCache } from './local.js';
// Building blocks of a third-party backend (an object store, a CI cache): the chain as a config and layer
// blobs in the content store, and a parsed config as the solver's import (results fetched through `BlobSource`).
export { exportCache } from './export.js';
export type { CacheMode, ExportedCache, ExportedLayer, LayerExportOptions } from './export.js';
export { cacheImport } from './import.js';
export type { BlobSource, CacheImportOptions } from './import.js';
export { readRegistryCache } from './registry.js';

export interface CacheBackendsOptions {
  /** The registry client whose connections, settings and concurrency limit the registry backend shares (its credentials are never used: each build's client gives them). */
  client?: RegistryClient;
  /** Settings of the default client: per-registry `hosts`, `concurrency`, `retry`. */
  registry?: RegistrySettings;
}

/**
 * `ignore-error=true`: a failed export becomes a warning (and an empty
 * response); otherwise the error names the backend. A cancelled build stays cancelled.
 */
async function guarded(type: BackendType, attrs: ExportAttrs, ctx: BuildContext, fn: () => Promise<Record<string, string>>): Promise<Record<string, string>> {
  try {
    return await fn();
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    const message = err instanceof Error ? err.message : String(err);
    if (attrs.ignoreError) {
      ctx.progress.warn(`cache export type=${type} failed (ignore-error=true): ${message}`);
      return {};
    }
    if (isBktError(err)) throw new BktError(err.code, `cache export type=${type}: ${message}`, { ...err.details, type }, { cause: err });
    throw new BktError('INTERNAL', `cache export type=${type}: ${message}`, { type }, { cause: err });
  }
}

function exporterOf(type: BackendType, attrs: ExportAttrs, shared: SharedRegistry): CacheExporterInstance {
  if (type === 'inline' && attrs.cacheMounts) {
    throw new BktError('INVALID_ARGUMENT', 'cache export type=inline: cache-mounts=true needs type=registry or type=local (an image config carries no cache mount contents)', { attribute: 'cache-mounts', type });
  }
  if (type === 'inline') {
    return {
      // The records travel in the image config; nothing is pushed here.
      export: async () => ({}),
      inline: async (chain, _result, ctx) => {
        try {
          const exported = await exportCache(chain, 'min', ctx, { compression: 'gzip', forceCompression: false, ociMediaTypes: true });
          return inlineRecords(exported);
        } catch (err) {
          if (attrs.ignoreError && !ctx.signal.aborted) {
            ctx.progress.warn(`inline cache failed (ignore-error=true): ${(err as Error).message}`);
            return undefined;
          }
          throw err;
        }
      },
    };
  }
  return {
    export: (chain, _result, ctx) => guarded(type, attrs, ctx, () => (type === 'registry' ? exportToRegistry(chain, attrs, shared, ctx) : exportToLocal(chain, attrs, ctx))),
  };
}

/** The `registry`, `local` and `inline` cache backends, sharing one registry client. */
export function createCacheBackends(opts: CacheBackendsOptions = {}): { backends: CacheBackend[]; close(): void } {
  const shared = new SharedRegistry(opts.registry, opts.client);
  const backend = (type: BackendType): CacheBackend => ({
    type,
    exporter: async (attrs) => exporterOf(type, parseExportAttrs(type, attrs), shared),
    importer: async (attrs) => {
      const a = parseImportAttrs(type, attrs);
      if (type === 'inline') {
        throw new BktError('INVALID_ARGUMENT', 'cache import type=inline: import an inline cache with type=registry,ref=IMAGE (as BuildKit)', { type });
      }
      return { load: (ctx) => (type === 'registry' ? importFromRegistry(a, shared, ctx) : importFromLocal(a, ctx)) };
    },
  });
  return { backends: [backend('registry'), backend('local'), backend('inline')], close: () => shared.close() };
}

/** The plugin: cache backends `registry`, `local` and `inline`. */
export default function cacheBackends(opts: CacheBackendsOptions = {}): BktPlugin {
  const { backends, close } = createCacheBackends(opts);
  return {
    name: '@bkt/cache-registry',
    cacheBackends: backends,
    setup({ hooks }) {
      hooks.shutdown.tapPromise('@bkt/cache-registry', async () => close());
    },
  };
}
