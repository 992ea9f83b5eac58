/**
 * Resolving an image: from a registry, an OCI layout directory, or the local
 * image store, down to one platform's manifest and config. Manifests and
 * configs land in the content store (verified) on the way, so a pinned image
 * resolves again without the network.
 */
import { type FileHandle, lstat, open, readFile } from 'node:fs/promises';
import { type Stats, constants as fsConstants } from 'node:fs';
import { join } from 'node:path';
import { BktError, type BuildContext, type ContentStore, type Digest, type Platform } from '@bkt/core';
import {
  MANIFEST_MEDIA_TYPES,
  MediaType,
  checkDescriptor,
  compressionOfMediaType,
  formatPlatform,
  isIndexMediaType,
  normalizePlatform,
  platformMatcher,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
} from '@bkt/oci';
import type { RegistryClient } from '@bkt/registry';

/** Where an image's blobs come from. */
export interface BlobProvider {
  /** `registry/repository` for registry images (recorded for cross-repository mounts); undefined otherwise. */
  readonly repository?: string;
  /** The verified bytes of a manifest, index or config; stored in the content store too. */
  read(desc: Descriptor, ctx: Pick<BuildContext, 'content' | 'signal'>): Promise<Uint8Array>;
  /** Makes a layer blob present in the content store (downloads it once, verified). */
  fetch(desc: Descriptor, ctx: Pick<BuildContext, 'content' | 'signal' | 'progress'>): Promise<void>;
}

/** One platform's image, resolved. */
export interface ResolvedImage {
  /** What the reference resolved to (an index or a manifest): the digest to pin. */
  digest: Digest;
  /** The platform's manifest. */
  manifestDescriptor: Descriptor;
  manifest: ImageManifest;
  configDescriptor: Descriptor;
  configBytes: Uint8Array;
  config: ImageConfig;
  platform: Platform;
  blobs: BlobProvider;
}

/** Reads a blob of the content store, or undefined when it is absent. */
async function readFromContent(content: ContentStore, digest: Digest): Promise<Uint8Array | undefined> {
  if (!(await content.has(digest))) return undefined;
  return new Uint8Array(await readFile(content.path(digest)));
}

async function* countingStream(
  source: AsyncIterable<Uint8Array>,
  desc: Descriptor,
  progress: BuildContext['progress'],
): AsyncGenerator<Uint8Array> {
  let done = 0;
  const id = desc.digest;
  const name = `pulling ${desc.digest.slice(0, 19)}`;
  let last = 0;
  for await (const chunk of source) {
    done += chunk.length;
    if (Date.now() - last > 100) {
      last = Date.now();
      progress.status(id, name, done, desc.size);
    }
    yield chunk;
  }
  progress.status(id, name, done, desc.size, true);
}

/** Blobs of a registry repository, through bkt's registry client. */
export function registryBlobs(client: RegistryClient, repository: string): BlobProvider {
  return {
    repository,
    async read(desc, ctx) {
      const have = await readFromContent(ctx.content, desc.digest);
      if (have) return have;
      if (MANIFEST_TYPES.has(desc.mediaType)) {
        const m = await client.getManifest(`${repository}@${desc.digest}`, { signal: ctx.signal });
        await ctx.content.write(m.bytes, desc.digest);
        return m.bytes;
      }
      await ctx.content.write(client.blobStream(repository, desc, { signal: ctx.signal }), desc.digest);
      return new Uint8Array(await readFile(ctx.content.path(desc.digest)));
    },
    async fetch(desc, ctx) {
      if (await ctx.content.has(desc.digest)) return;
      // The content store hashes what it writes and refuses a digest mismatch: the client need not hash too.
      const stream = client.blobStream(repository, desc, { signal: ctx.signal, verifyDigest: false });
      try {
        await ctx.content.write(countingStream(stream, desc, ctx.progress), desc.digest);
      } catch (err) {
        if (!(err instanceof BktError) || err.message.includes(repository)) throw err;
        throw new BktError(err.code, `GET blob ${desc.digest} from ${repository}: ${err.message}`, err.details, { cause: err });
      }
    },
  };
}

/**
 * Blobs of an OCI image layout directory (`blobs/sha256/<hex>`), copied into
 * the content store verified. The layout is the user's input, so each blob
 * file is held to what its descriptor says: `blobs` and `blobs/sha256` are
 * directories of the layout (not symlinks), the blob is a regular file (no
 * FIFO, device or symlink: opened without following one) of exactly
 * `desc.size` bytes, at most that many bytes are read, and the content store
 * checks the digest before committing.
 */
export function layoutBlobs(dir: string): BlobProvider {
  const copy = async (desc: Descriptor, ctx: Pick<BuildContext, 'content' | 'signal'>) => {
    throwIfCancelled(dir, ctx.signal);
    const blob = await openLayoutBlob(dir, desc.digest);
    try {
      if (blob.size !== desc.size) {
        throw new BktError('INVALID_ARGUMENT', `OCI layout ${dir}: blob ${desc.digest} has ${blob.size} bytes, its descriptor says ${desc.size}`, { digest: desc.digest });
      }
      const stream = blob.handle.createReadStream({ start: 0, end: Math.max(desc.size - 1, 0), autoClose: false });
      await ctx.content.write(desc.size === 0 ? emptyStream() : untilCancelled(stream, dir, ctx.signal), desc.digest);
    } finally {
      await blob.handle.close();
    }
  };
  return {
    async read(desc, ctx) {
      throwIfCancelled(dir, ctx.signal);
      const have = await readFromContent(ctx.content, desc.digest);
      if (have) return have;
      await copy(desc, ctx);
      return new Uint8Array(await readFile(ctx.content.path(desc.digest)));
    },
    async fetch(desc, ctx) {
      throwIfCancelled(dir, ctx.signal);
      if (!(await ctx.content.has(desc.digest))) await copy(desc, ctx);
    },
  };
}

async function* emptyStream(): AsyncGenerator<Uint8Array> {}

function throwIfCancelled(dir: string, signal: AbortSignal): void {
  if (signal.aborted) throw new BktError('CANCELLED', `reading OCI layout ${dir} cancelled`);
}

/** `chunks`, stopping with CANCELLED once `signal` is aborted. */
async function* untilCancelled(chunks: AsyncIterable<Uint8Array>, dir: string, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) {
    throwIfCancelled(dir, signal);
    yield chunk;
  }
}

/**
 * Opens a layout's blob file for reading, refusing what is not a regular file
 * inside the layout; its size is what `fstat` says of the opened file.
 */
export async function openLayoutBlob(dir: string, digest: Digest): Promise<{ handle: FileHandle; size: number }> {
  if (!digest.startsWith('sha256:')) {
    throw new BktError('UNIMPLEMENTED', `OCI layout ${dir}: blob ${digest}: only sha256 blobs are supported`, { digest });
  }
  for (const sub of ['blobs', 'blobs/sha256']) {
    const st = await lstat(join(dir, sub)).catch(() => undefined);
    if (!st) throw new BktError('NOT_FOUND', `OCI layout ${dir} has no blob ${digest}`, { digest });
    if (!st.isDirectory()) {
      throw new BktError('INVALID_ARGUMENT', `OCI layout ${dir}: ${sub} is not a directory of the layout (a symlink or other file is refused)`, { digest });
    }
  }
  const path = join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  let handle: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO does not wait for a writer; O_NOFOLLOW: a symlink is refused (ELOOP).
    handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new BktError('NOT_FOUND', `OCI layout ${dir} has no blob ${digest}`, { digest });
    if (code === 'ELOOP') throw new BktError('INVALID_ARGUMENT', `OCI layout ${dir}: blob ${digest} is a symlink, not a regular file`, { digest });
    throw err;
  }
  const st = await handle.stat();
  if (!st.isFile()) {
    await handle.close();
    throw new BktError('INVALID_ARGUMENT', `OCI layout ${dir}: blob ${digest} is not a regular file (${fileKind(st)})`, { digest });
  }
  return { handle, size: st.size };
}

function fileKind(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a directory';
  return 'not a file';
}

/** Blobs already in the content store (images of the local image store). */
export function contentBlobs(what: string): BlobProvider {
  const need = async (desc: Descriptor, content: ContentStore) => {
    const have = await readFromContent(content, desc.digest);
    if (!have) throw new BktError('NOT_FOUND', `${what}: blob ${desc.digest} is missing from the content store`, { digest: desc.digest });
    return have;
  };
  return {
    read: (desc, ctx) => need(desc, ctx.content),
    fetch: async (desc, ctx) => void (await need(desc, ctx.content)),
  };
}

const MANIFEST_TYPES = new Set<string>(MANIFEST_MEDIA_TYPES);

function parseJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as T;
  } catch {
    throw new BktError('INVALID_ARGUMENT', `${what} is not valid JSON`);
  }
}

/** The media type of a manifest or index from its JSON, when the descriptor does not say. */
function mediaTypeOf(json: { mediaType?: string; manifests?: unknown }): string {
  if (json.mediaType) return json.mediaType;
  return Array.isArray(json.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
}

/**
 * From the descriptor a reference resolved to (an index or a manifest), the
 * manifest and config of `platform`. `what` names the image in errors.
 */
export async function resolvePlatformImage(
  root: Descriptor,
  platform: Platform,
  blobs: BlobProvider,
  ctx: Pick<BuildContext, 'content' | 'signal'>,
  what: string,
): Promise<ResolvedImage> {
  let desc = root;
  let bytes = await blobs.read(desc, ctx);
  let json = parseJson<ImageManifest & ImageIndex>(bytes, `manifest ${desc.digest} of ${what}`);
  let mediaType = desc.mediaType || mediaTypeOf(json);
  if (isIndexMediaType(mediaType) || (!json.config && Array.isArray(json.manifests))) {
    const candidates = (json.manifests ?? []).filter((m) => !isAttestation(m));
    const match = bestPlatformMatch(candidates, platform) ?? (candidates.length === 1 && !candidates[0].platform ? candidates[0] : undefined);
    if (!match) {
      const available = candidates.map((m) => (m.platform ? formatPlatform(normalizePlatform(m.platform)) : 'unknown')).join(', ') || 'none';
      throw new BktError(
        'NOT_FOUND',
        `${what} has no image for platform ${formatPlatform(platform)} (available: ${available})`,
        { platform: formatPlatform(platform) },
      );
    }
    checkDescriptor(match, `${what}: index ${desc.digest}, entry for ${formatPlatform(platform)}`);
    desc = { mediaType: match.mediaType, digest: match.digest, size: match.size };
    bytes = await blobs.read(desc, ctx);
    json = parseJson<ImageManifest & ImageIndex>(bytes, `manifest ${desc.digest} of ${what}`);
    mediaType = desc.mediaType || mediaTypeOf(json);
    if (isIndexMediaType(mediaType)) throw new BktError('UNIMPLEMENTED', `${what}: nested image indexes are not supported (${desc.digest})`);
  }
  const manifest = json as ImageManifest;
  if (!manifest.config || !Array.isArray(manifest.layers)) {
    throw new BktError('INVALID_ARGUMENT', `${what}: manifest ${desc.digest} is not an image manifest (no config or layers)`);
  }
  checkImageManifest(manifest, `${what}: manifest ${desc.digest}`);
  const configBytes = await blobs.read(manifest.config, ctx);
  const config = parseJson<ImageConfig>(configBytes, `config ${manifest.config.digest} of ${what}`);
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== manifest.layers.length) {
    throw new BktError(
      'INVALID_ARGUMENT',
      `${what}: manifest ${desc.digest} has ${manifest.layers.length} layers but its config lists ${diffIds.length} diff_ids`,
    );
  }
  return {
    digest: root.digest,
    manifestDescriptor: { mediaType: mediaType, digest: desc.digest, size: desc.size >= 0 ? desc.size : bytes.byteLength },
    manifest,
    configDescriptor: manifest.config,
    configBytes,
    config,
    platform: normalizePlatform({ os: config.os, architecture: config.architecture, variant: config.variant }),
    blobs,
  };
}

const CONFIG_MEDIA_TYPES = new Set<string>([MediaType.OciConfig, MediaType.DockerConfig]);

/**
 * Checks the descriptors of an image manifest: each well-formed (see
 * `checkDescriptor`: a negative size would lift the download's size limit),
 * the config an image config, each layer of a layer media type bkt can
 * unpack (tar, gzip or zstd; OCI and Docker names). Throws naming the field.
 */
function checkImageManifest(manifest: ImageManifest, what: string): void {
  checkDescriptor(manifest.config, `${what}, config`);
  if (!CONFIG_MEDIA_TYPES.has(manifest.config.mediaType)) {
    throw new BktError(
      'INVALID_ARGUMENT',
      `${what}: config has media type "${manifest.config.mediaType}", not an image config (${[...CONFIG_MEDIA_TYPES].join(' or ')})`,
      { attribute: 'mediaType' },
    );
  }
  manifest.layers.forEach((layer, i) => {
    const where = `${what}, layer ${i + 1}/${manifest.layers.length}`;
    checkDescriptor(layer, where);
    if (compressionOfMediaType(layer.mediaType) === undefined) {
      throw new BktError('INVALID_ARGUMENT', `${where}: unknown layer media type "${layer.mediaType}" (${layer.digest})`, { attribute: 'mediaType' });
    }
  });
}

/** The entry of an index whose platform suits `platform` best (containerd's `platforms.Only`), if any does. */
function bestPlatformMatch(entries: Descriptor[], platform: Platform): Descriptor | undefined {
  const matcher = platformMatcher(platform);
  const suitable = entries.filter((m) => m.platform && matcher.matches(m.platform));
  // A stable sort: among equally good entries the index's first wins.
  return suitable.sort((a, b) => matcher.compare(a.platform!, b.platform!))[0];
}

/** Attestation manifests BuildKit puts in indexes (`unknown/unknown` with a reference type annotation). */
function isAttestation(d: Descriptor): boolean {
  return d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest';
}
