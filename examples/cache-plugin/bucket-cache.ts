/**
 * A third-party cache backend, `type=bucket`: the cache of a build kept in
 * an object store — here a directory standing in for a bucket (S3, GCS, a
 * CI cache service), given in the plugin's options like a bucket's
 * endpoint. A real backend replaces `has`, `put` and `get` with the store's
 * calls; everything else (the format, key matching, lazy layer fetches) is
 * the same, from @bkt/cache-registry's building blocks.
 *
 *   --cache-to   type=bucket,name=NAME[,mode=min|max]
 *   --cache-from type=bucket,name=NAME
 *
 * Objects: `blobs/sha256-<hex>` (layer blobs, written once), then
 * `caches/NAME.json` (the cache config, written last: a reader never sees a
 * config whose blobs are missing).
 */
import { createReadStream } from 'node:fs';
import { access, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { BktError, type Attrs, type BktPlugin, type CacheBackend } from '@bkt/core';
import { cacheImport, exportCache, parseCacheConfig, serializeCacheConfig, type CacheMode } from '@bkt/cache-registry';

export interface BucketCacheOptions {
  /** Where the bucket is (a directory here; an endpoint and bucket name for a real store). */
  bucket: string;
}

export function bucketCache(opts: BucketCacheOptions): BktPlugin {
  const object = (key: string) => join(opts.bucket, key);
  const blobKey = (digest: string) => `blobs/${digest.replace(':', '-')}`;
  const has = (key: string) => access(object(key)).then(() => true, () => false);
  const put = async (key: string, body: Uint8Array | NodeJS.ReadableStream) => {
    const path = object(key);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    if (body instanceof Uint8Array) await writeFile(tmp, body);
    else await pipeline(body, createWriteStream(tmp));
    await rename(tmp, path);
  };
  const get = (key: string) => readFile(object(key));

  const nameOf = (attrs: Attrs, side: string) => {
    const name = attrs.name;
    if (!name || !/^[A-Za-z0-9._-]+$/.test(name)) throw new BktError('INVALID_ARGUMENT', `cache ${side} type=bucket: name must be [A-Za-z0-9._-]+, got "${name ?? ''}"`, { attribute: 'name' });
    for (const k of Object.keys(attrs)) {
      if (!['name', 'mode'].includes(k)) throw new BktError('INVALID_ARGUMENT', `cache ${side} type=bucket: unknown attribute "${k}" (known: name, mode)`, { attribute: k });
    }
    return name;
  };

  const backend: CacheBackend = {
    type: 'bucket',
    async exporter(attrs) {
      const name = nameOf(attrs, 'export');
      const mode = (attrs.mode ?? 'min') as CacheMode;
      if (mode !== 'min' && mode !== 'max') throw new BktError('INVALID_ARGUMENT', `cache export type=bucket: mode must be min or max, got "${mode}"`, { attribute: 'mode' });
      return {
        async export(chain, _result, ctx) {
          const exported = await exportCache(chain, mode, ctx, { compression: 'gzip', forceCompression: false, ociMediaTypes: true });
          // Blobs first (each once), the config last.
          await Promise.all(
            [...exported.layers.values()].map(async (l) => {
              const key = blobKey(l.descriptor.digest);
              if (!(await has(key))) await put(key, createReadStream(ctx.content.path(l.descriptor.digest)));
            }),
          );
          await put(`caches/${name}.json`, serializeCacheConfig(exported.config));
          return { 'cache.bucket': `${opts.bucket}/caches/${name}.json` };
        },
      };
    },
    async importer(attrs) {
      const name = nameOf(attrs, 'import');
      return {
        async load() {
          const key = `caches/${name}.json`;
          if (!(await has(key))) throw new BktError('NOT_FOUND', `cache import type=bucket: no cache "${name}" in ${opts.bucket}`, { attribute: 'name' });
          // The config's layer annotations carry each blob's media type, size and diff id.
          const config = parseCacheConfig(await get(key), `bucket cache ${name}`);
          return cacheImport(config, new Map(), {
            // The bytes of a blob the store lacks; `store` writes (and verifies) them.
            fetch: (desc, _ctx, store) => store(createReadStream(object(blobKey(desc.digest)))),
          }, `bucket cache ${name}`);
        },
      };
    },
  };
  return { name: 'example-bucket-cache', cacheBackends: [backend] };
}
