/**
 * The `registry` cache backend: a cache in a registry repository, and the
 * `inline` importer's side (an image whose config carries records).
 *
 * Export order, as BuildKit's: every layer blob (in parallel, bounded by the
 * registry client), then the config blob, then the manifest under `ref` —
 * a manifest is put only once every blob it names is in the repository, so
 * no reader ever sees a manifest whose blobs are missing.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { BktError, isBktError, type BuildContext, type CacheChain, type CacheImport, type Digest } from '@bkt/core';
import { parseReference, repositoryName, type Descriptor } from '@bkt/oci';
import { RegistryClient, buildClientCredentials, type RegistrySettings, type StreamBody } from '@bkt/registry';
import type { ExportAttrs, ImportAttrs } from './attrs.js';
import { CACHE_CONFIG_MEDIA_TYPE, mergeCacheConfigs, parseCacheConfig, serializeCacheConfig, type CacheConfig } from './config.js';
import { exportCache, manifestLayer } from './export.js';
import { cacheImport } from './import.js';
import { cacheManifest, hostManifest, inlineCacheOf, readCacheContainer } from './manifest.js';
import { inlineConfig } from './inline.js';

/** The registry client the plugin shares between builds (connections, settings, concurrency); each build uses a view with its own credentials. */
export class SharedRegistry {
  #client: RegistryClient | undefined;
  constructor(private readonly settings: RegistrySettings = {}, private readonly given?: RegistryClient) {}

  /**
   * Runs `fn` with the client of `ctx`'s build for `ref`: `insecure`
   * (registry.insecure) is HTTPS without certificate checks falling back to
   * plain HTTP for that registry, on a client of its own.
   */
  async with<T>(ref: string, insecure: boolean, ctx: BuildContext, fn: (c: RegistryClient) => Promise<T>): Promise<T> {
    const credentials = buildClientCredentials(ctx.client);
    if (!insecure) {
      this.#client ??= this.given ?? new RegistryClient(this.settings);
      return fn(this.#client.withCredentials(credentials));
    }
    const host = parseReference(ref).registry;
    const hosts = { ...this.settings.hosts, [host]: { ...this.settings.hosts?.[host], insecure: true, http: this.settings.hosts?.[host]?.http ?? true } };
    const client = new RegistryClient({ ...this.settings, hosts, credentials });
    try {
      return await fn(client);
    } finally {
      client.close();
    }
  }

  close(): void {
    if (!this.given) this.#client?.close();
  }
}

/** How many bytes a pushed blob's file is read at a time. */
const BLOB_READ_BYTES = 1 << 20;

async function blobBody(ctx: BuildContext, digest: Digest): Promise<StreamBody> {
  const path = ctx.content.path(digest);
  const { size } = await stat(path);
  // Read in MiB pieces: a layer goes to the socket in a few hundred writes, not thousands.
  return { size, open: () => createReadStream(path, { highWaterMark: BLOB_READ_BYTES }) };
}

/** The cache config at `ref`, when there is one (for `merge=true`); undefined when the ref does not exist. */
async function existingCache(client: RegistryClient, ref: string, ctx: BuildContext): Promise<{ config: CacheConfig; layers: Descriptor[] } | undefined> {
  const head = await client.headManifest(ref, { signal: ctx.signal });
  if (!head) return undefined;
  const m = await client.getManifest(ref, { signal: ctx.signal });
  const c = readCacheContainer(m.bytes, m.descriptor.mediaType, `cache ${ref}`);
  if (c.kind !== 'cache') throw new BktError('INVALID_ARGUMENT', `cache export merge=true: ${ref} holds an image, not a cache`, { attribute: 'merge' });
  const { config } = await readRegistryCache(client, ref, ctx);
  return { config, layers: c.layers };
}

/** Exports `chain` to `attrs.ref`; returns BuildKit's response key (`cache.manifest`: the manifest descriptor). */
export async function exportToRegistry(chain: CacheChain, attrs: ExportAttrs, shared: SharedRegistry, ctx: BuildContext): Promise<Record<string, string>> {
  const ref = attrs.ref!;
  const r = parseReference(ref);
  const repo = repositoryName(r);
  const exported = await exportCache(chain, attrs.mode, ctx, attrs);
  return shared.with(ref, attrs.insecure, ctx, async (client) => {
    let config = exported.config;
    const layerDescs = new Map<Digest, Descriptor>([...exported.layers.values()].map((l) => [l.descriptor.digest, manifestLayer(l)]));
    if (attrs.merge) {
      const before = await existingCache(client, ref, ctx);
      if (before) {
        config = mergeCacheConfigs([before.config, config]);
        for (const d of before.layers) if (!layerDescs.has(d.digest)) layerDescs.set(d.digest, d);
      }
    }
    const bytes = serializeCacheConfig(config);
    const normal = parseCacheConfig(bytes, 'exported cache config');
    // 1. Layers, in parallel (the client bounds how many at once). A blob the repository has is not sent again.
    const pushes = [...exported.layers.values()].map(async (l) => {
      const mountFrom = l.sources.filter((s) => s.startsWith(`${r.registry}/`)).map((s) => s.slice(r.registry.length + 1)).filter((s) => s !== r.repository);
      const how = await client.pushBlob(repo, l.descriptor, await blobBody(ctx, l.descriptor.digest), { mountFrom, signal: ctx.signal });
      ctx.progress.status(`push ${l.descriptor.digest}`, `pushing layer ${l.descriptor.digest.slice(0, 19)} (${how})`, l.descriptor.size, l.descriptor.size, true);
    });
    const settled = await Promise.allSettled(pushes);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    // 2. The config.
    const configDesc: Descriptor = { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: (await ctx.content.write(bytes)).digest, size: bytes.length };
    await client.pushBlob(repo, configDesc, bytes, { signal: ctx.signal });
    // 3. The manifest, naming only blobs now in the repository.
    const manifest = cacheManifest(configDesc, normal.layers.map((l) => layerDescs.get(l.blob) ?? missingLayer(l.blob)), attrs);
    const desc = await client.putManifest(ref, manifest.bytes, { mediaType: manifest.mediaType, signal: ctx.signal });
    ctx.progress.status(`cache ${ref}`, `writing cache manifest ${desc.digest.slice(0, 19)} (${exported.resultRecords} results, ${normal.records.length} records)`, 1, 1, true);
    return { 'cache.manifest': JSON.stringify({ mediaType: manifest.mediaType, digest: desc.digest, size: manifest.bytes.length }) };
  });
}

function missingLayer(blob: Digest): never {
  throw new BktError('INTERNAL', `cache layer ${blob} has no descriptor`);
}

/**
 * The cache at `attrs.ref`: a cache manifest (either form), or an image
 * whose config carries an inline cache (an index: this platform's image).
 * Reads the manifest and the config only; layers are fetched when a result
 * is needed.
 */
export async function importFromRegistry(attrs: ImportAttrs, shared: SharedRegistry, ctx: BuildContext): Promise<CacheImport> {
  const ref = attrs.ref!;
  const repo = repositoryName(parseReference(ref));
  const { config, blobs } = await shared.with(ref, attrs.insecure, ctx, (client) => readRegistryCache(client, ref, ctx));
  // Layers are fetched through a client of the build that needs them (its credentials).
  return cacheImport(config, blobs, {
    repository: repo,
    // The content store verifies what it writes: the client need not hash too.
    fetch: (desc, c, store) => shared.with(ref, attrs.insecure, c, (client) => store(client.blobStream(repo, desc, { signal: c.signal, verifyDigest: false }))),
  }, ref, { cacheMounts: attrs.cacheMounts });
}

/** Reads the cache config at `ref` (for an import and for `bkt cache inspect`). */
export async function readRegistryCache(
  client: RegistryClient,
  ref: string,
  ctx: { signal: AbortSignal },
): Promise<{ config: CacheConfig; blobs: Map<Digest, Descriptor>; manifest: Descriptor; inline: boolean }> {
  const repo = repositoryName(parseReference(ref));
  let m;
  try {
    m = await client.getManifest(ref, { signal: ctx.signal });
  } catch (err) {
    if (isBktError(err) && err.code === 'NOT_FOUND') throw new BktError('NOT_FOUND', `cache ${ref} not found: ${err.message}`, err.details, { cause: err });
    throw err;
  }
  let c = readCacheContainer(m.bytes, m.descriptor.mediaType, `cache ${ref}`);
  let manifestDesc = m.descriptor;
  let bytes = m.bytes;
  if (c.kind === 'index') {
    const platform = hostManifest(c.manifests, `cache ${ref}`);
    const pm = await client.getManifest(`${repo}@${platform.digest}`, { signal: ctx.signal });
    manifestDesc = pm.descriptor;
    bytes = pm.bytes;
    c = readCacheContainer(pm.bytes, pm.descriptor.mediaType, `cache ${ref} (${platform.digest})`);
  }
  // Configs are read into memory (the client checks their digest); layers are fetched only by an import.
  const read = async (desc: Descriptor): Promise<Uint8Array> => {
    const chunks: Uint8Array[] = [];
    for await (const c of client.blobStream(repo, desc, { signal: ctx.signal })) chunks.push(c);
    return Buffer.concat(chunks);
  };
  if (c.kind === 'cache') {
    const what = `cache config ${c.config.digest} of ${ref}`;
    const config = parseCacheConfig(await read(c.config), what);
    return { config, blobs: new Map(c.layers.map((d) => [d.digest, d])), manifest: manifestDesc, inline: false };
  }
  // An image: its config may carry an inline cache.
  const doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as { config: Descriptor; layers?: Descriptor[] };
  const imageConfig = await read(doc.config);
  const inline = inlineCacheOf(imageConfig, `image ${ref}`);
  if (!inline) throw new BktError('NOT_FOUND', `${ref} is an image without an inline cache (build it with --cache-to type=inline, or BUILDKIT_INLINE_CACHE=1)`);
  const layers = doc.layers ?? [];
  const config = inlineConfig(inline, layers, imageConfig, `inline cache of ${ref}`);
  return { config, blobs: new Map(layers.map((d) => [d.digest, d])), manifest: manifestDesc, inline: true };
}
