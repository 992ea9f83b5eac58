/**
 * The `local` cache backend: a cache in an OCI image layout directory of the
 * client (`dest` / `src`, the manifest under `tag` in `index.json`, or
 * `digest`). Everything goes through the client seam: an export writes the
 * directory as a directory output (`openDir`: blobs, then `index.json` last),
 * an import reads it as a client directory. The client offers the directory
 * `DIR` under the name `localCacheDirName(DIR)` (the CLI does for
 * `--cache-from type=local,src=DIR`, and for an existing `dest` so that other
 * tags of `index.json` are kept).
 */
import { createReadStream } from 'node:fs';
import { BktError, isBktError, type BuildContext, type CacheChain, type CacheImport, type ClientLocalDir, type Digest, type FileStat } from '@bkt/core';
import { MediaType, type Descriptor } from '@bkt/oci';
import type { ExportAttrs, ImportAttrs } from './attrs.js';
import { mergeCacheConfigs, parseCacheConfig, serializeCacheConfig, CACHE_CONFIG_MEDIA_TYPE, type CacheConfig } from './config.js';
import { exportCache, manifestLayer } from './export.js';
import { cacheImport } from './import.js';
import { cacheManifest, readCacheContainer } from './manifest.js';

/** The name under which a client offers cache directory `dir` (`src` of an import, `dest` of an export). */
export function localCacheDirName(dir: string): string {
  return `cache:${dir}`;
}

const REF_NAME = 'org.opencontainers.image.ref.name';

interface Layout {
  dir: ClientLocalDir;
  files: Map<string, FileStat>;
}

async function openLayout(dir: ClientLocalDir, signal: AbortSignal): Promise<Layout> {
  const files = new Map<string, FileStat>();
  for await (const e of dir.stat({}, signal)) files.set(e.path, e);
  return { dir, files };
}

async function readAll(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of it) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

const blobPath = (digest: string) => `blobs/sha256/${digest.replace(/^sha256:/, '')}`;

async function readLayoutFile(l: Layout, path: string, what: string, signal: AbortSignal): Promise<Buffer> {
  const st = l.files.get(path);
  if (!st || (st.mode & 0o170000) !== 0o100000) throw new BktError('NOT_FOUND', `${what}: ${path} is not a regular file of the layout`, { path });
  return readAll(l.dir.read(path, signal));
}

/** The manifest of `tag` (or `digest`) in a layout's index.json. */
function pickManifest(index: Buffer, want: { tag: string; digest?: string }, what: string): Descriptor {
  const doc = JSON.parse(index.toString('utf8')) as { manifests?: Descriptor[] };
  const entries = doc.manifests ?? [];
  const found = want.digest ? entries.find((d) => d.digest === want.digest) : entries.find((d) => d.annotations?.[REF_NAME] === want.tag);
  if (!found) {
    const tags = entries.map((d) => d.annotations?.[REF_NAME]).filter(Boolean).join(', ') || 'none';
    throw new BktError('NOT_FOUND', `${what}: no cache ${want.digest ? `with digest ${want.digest}` : `tagged ${want.tag}`} in index.json (tags: ${tags})`, { attribute: want.digest ? 'digest' : 'tag' });
  }
  return found;
}

/** Reads the cache of a layout (for an import, `bkt cache inspect`, and an export's merge). */
export async function readLayoutCache(
  dir: ClientLocalDir,
  want: { tag: string; digest?: string },
  what: string,
  signal: AbortSignal,
): Promise<{ config: CacheConfig; blobs: Map<Digest, Descriptor>; manifest: Descriptor; layout: Layout; index: Buffer }> {
  const layout = await openLayout(dir, signal);
  const index = await readLayoutFile(layout, 'index.json', what, signal);
  const manifest = pickManifest(index, want, what);
  const bytes = await readLayoutFile(layout, blobPath(manifest.digest), what, signal);
  const c = readCacheContainer(bytes, manifest.mediaType, what);
  if (c.kind !== 'cache') throw new BktError('INVALID_ARGUMENT', `${what}: ${manifest.digest} is not a cache manifest`);
  const config = parseCacheConfig(await readLayoutFile(layout, blobPath(c.config.digest), what, signal), `cache config ${c.config.digest} of ${what}`);
  return { config, blobs: new Map(c.layers.map((d) => [d.digest, d])), manifest, layout, index };
}

export async function importFromLocal(attrs: ImportAttrs, ctx: BuildContext): Promise<CacheImport> {
  const what = `local cache ${attrs.src}`;
  const dir = ctx.client.localDir(localCacheDirName(attrs.src!));
  if (!dir) throw new BktError('NOT_FOUND', `${what}: the build's client does not offer this directory`, { attribute: 'src' });
  const { config, blobs, layout } = await readLayoutCache(dir, attrs, what, ctx.signal);
  return cacheImport(config, blobs, {
    async fetch(desc, c, store) {
      const path = blobPath(desc.digest);
      if (!layout.files.has(path)) throw new BktError('NOT_FOUND', `${what}: blob ${desc.digest} is missing from the layout`, { path });
      await store(layout.dir.read(path, c.signal));
    },
  }, what, { cacheMounts: attrs.cacheMounts });
}

/** Exports `chain` into the layout at `attrs.dest`: blobs first, `index.json` last. */
export async function exportToLocal(chain: CacheChain, attrs: ExportAttrs, ctx: BuildContext): Promise<Record<string, string>> {
  const dest = attrs.dest!;
  const what = `local cache ${dest}`;
  const exported = await exportCache(chain, attrs.mode, ctx, attrs);
  let config = exported.config;
  const layerDescs = new Map<Digest, Descriptor>([...exported.layers.values()].map((l) => [l.descriptor.digest, manifestLayer(l)]));
  // What the directory has (when the client offers it): other tags are kept; merge=true keeps this tag's records.
  let others: Descriptor[] = [];
  const existing = ctx.client.localDir(localCacheDirName(dest));
  if (existing) {
    // A directory that does not exist yet has nothing to keep.
    const layout = await openLayout(existing, ctx.signal).catch((err: unknown) => {
      if (isBktError(err) && err.code === 'NOT_FOUND') return undefined;
      throw err;
    });
    if (layout?.files.has('index.json')) {
      const index = JSON.parse((await readLayoutFile(layout, 'index.json', what, ctx.signal)).toString('utf8')) as { manifests?: Descriptor[] };
      others = (index.manifests ?? []).filter((d) => d.annotations?.[REF_NAME] !== attrs.tag);
      if (attrs.merge) {
        const before = await readLayoutCache(existing, { tag: attrs.tag }, what, ctx.signal).catch(() => undefined);
        if (before) {
          config = mergeCacheConfigs([before.config, config]);
          for (const d of before.blobs.values()) if (!layerDescs.has(d.digest)) layerDescs.set(d.digest, d);
        }
      }
    }
  }
  const bytes = serializeCacheConfig(config);
  const normal = parseCacheConfig(bytes, 'exported cache config');
  const configDesc: Descriptor = { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: (await ctx.content.write(bytes)).digest, size: bytes.length };
  const manifest = cacheManifest(configDesc, normal.layers.map((l) => layerDescs.get(l.blob)!), attrs);
  const manifestDigest = (await ctx.content.write(manifest.bytes)).digest;
  const manifestDesc: Descriptor = { mediaType: manifest.mediaType, digest: manifestDigest, size: manifest.bytes.length };
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [...others, { ...manifestDesc, annotations: { [REF_NAME]: attrs.tag } }],
  };
  const indexBytes = Buffer.from(JSON.stringify(index));

  const out = await ctx.client.openDir(dest, { what: `cache export type=local: dest` });
  const now = Date.now();
  const dirEntry = (path: string): FileStat => ({ path, mode: 0o40755, uid: 0, gid: 0, size: 0, mtimeMs: now });
  const file = (path: string, size: number): FileStat => ({ path, mode: 0o100644, uid: 0, gid: 0, size, mtimeMs: now });
  const fromContent = (digest: Digest) => ({ localPath: ctx.content.path(digest), stream: () => createReadStream(ctx.content.path(digest)) as AsyncIterable<Uint8Array> });
  await out.write(dirEntry('blobs'));
  await out.write(dirEntry('blobs/sha256'));
  for (const l of exported.layers.values()) {
    ctx.signal.throwIfAborted();
    await out.write(file(blobPath(l.descriptor.digest), l.descriptor.size), fromContent(l.descriptor.digest));
  }
  await out.write(file(blobPath(configDesc.digest), configDesc.size), fromContent(configDesc.digest));
  await out.write(file(blobPath(manifestDigest), manifestDesc.size), fromContent(manifestDigest));
  const layoutBytes = Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await out.write(file('oci-layout', layoutBytes.length), { stream: async function* () { yield layoutBytes; } });
  await out.write(file('index.json', indexBytes.length), { stream: async function* () { yield indexBytes; } });
  await out.commit();
  return { 'cache.manifest': JSON.stringify(manifestDesc) };
}
