/**
 * Resolving an image: from a registry, an OCI layout directory, or the local
 * image store, down to one platform's manifest and config. Manifests and
 * configs land in the content store (verified) on the way, so a pinned image
 * resolves again without the network.
 */
import { readFile } from 'node:fs/promises';
import { BktError, type BuildContext, type ClientLocalDir, type ContentStore, type Digest, type FileStat, type Platform } from '@bkt/core';
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
  /**
   * Makes a layer blob present in the content store (downloads it once,
   * verified). Its bytes go through `store` when given: it writes them to
   * the content store (verifying them) and may unpack them on the way.
   */
  fetch(desc: Descriptor, ctx: Pick<BuildContext, 'content' | 'signal' | 'progress'>, store?: BlobWriter): Promise<void>;
}

/** Writes a blob's bytes to the content store, verified (see `BlobProvider.fetch`). */
export type BlobWriter = (bytes: AsyncIterable<Uint8Array>) => Promise<void>;

const contentWriter = (content: ContentStore, digest: Digest): BlobWriter => async (bytes) => void (await content.write(bytes, digest));

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
    async fetch(desc, ctx, store = contentWriter(ctx.content, desc.digest)) {
      if (await ctx.content.has(desc.digest)) return;
      // The content store hashes what it writes and refuses a digest mismatch: the client need not hash too.
      const stream = client.blobStream(repository, desc, { signal: ctx.signal, verifyDigest: false });
      try {
        await store(countingStream(stream, desc, ctx.progress));
      } catch (err) {
        if (!(err instanceof BktError) || err.message.includes(repository)) throw err;
        throw new BktError(err.code, `GET blob ${desc.digest} from ${repository}: ${err.message}`, err.details, { cause: err });
      }
    },
  };
}

/**
 * An OCI image layout directory of the client (`ClientLocalDir`): its files'
 * stat entries, read once, and their content through the client seam.
 */
export interface LayoutDir {
  readonly name: string;
  /** The bytes of `index.json`; `NOT_FOUND` when there is none. */
  readIndex(signal: AbortSignal): Promise<Buffer>;
  /**
   * The size of blob `digest`, checked: `blobs` and `blobs/sha256` are
   * directories of the layout (not symlinks), the blob a regular file (no
   * FIFO, device or symlink).
   */
  blobSize(digest: Digest, signal: AbortSignal): Promise<number>;
  /** The bytes of blob `digest` (the client refuses anything but a regular file). */
  readBlob(digest: Digest, signal: AbortSignal): AsyncIterable<Uint8Array>;
}

const S_IFMT = 0o170000;
const FILE_KINDS: Record<number, string> = {
  0o010000: 'a FIFO',
  0o020000: 'a character device',
  0o060000: 'a block device',
  0o140000: 'a socket',
  0o040000: 'a directory',
  0o120000: 'a symlink',
  0o100000: 'a regular file',
};

/** The layout in client directory `dir`. */
export function layoutDir(dir: ClientLocalDir): LayoutDir {
  let entries: Promise<Map<string, FileStat>> | undefined;
  const stats = (signal: AbortSignal) =>
    (entries ??= (async () => {
      const byPath = new Map<string, FileStat>();
      for await (const e of dir.stat({ include: ['blobs'] }, signal)) byPath.set(e.path, e);
      return byPath;
    })());
  const blobPath = (digest: Digest) => {
    if (!digest.startsWith('sha256:')) {
      throw new BktError('UNIMPLEMENTED', `OCI layout "${dir.name}": blob ${digest}: only sha256 blobs are supported`, { digest });
    }
    return `blobs/sha256/${digest.slice('sha256:'.length)}`;
  };
  return {
    name: dir.name,
    async readIndex(signal) {
      const parts: Buffer[] = [];
      for await (const chunk of dir.read('index.json', signal)) parts.push(Buffer.from(chunk));
      return Buffer.concat(parts);
    },
    async blobSize(digest, signal) {
      const path = blobPath(digest);
      const byPath = await stats(signal);
      for (const sub of ['blobs', 'blobs/sha256']) {
        const st = byPath.get(sub);
        if (!st) throw new BktError('NOT_FOUND', `OCI layout "${dir.name}" has no blob ${digest}`, { digest });
        if ((st.mode & S_IFMT) !== 0o040000) {
          throw new BktError('INVALID_ARGUMENT', `OCI layout "${dir.name}": ${sub} is not a directory of the layout (a symlink or other file is refused)`, { digest });
        }
      }
      const st = byPath.get(path);
      if (!st) throw new BktError('NOT_FOUND', `OCI layout "${dir.name}" has no blob ${digest}`, { digest });
      const kind = st.mode & S_IFMT;
      if (kind === 0o120000) throw new BktError('INVALID_ARGUMENT', `OCI layout "${dir.name}": blob ${digest} is a symlink, not a regular file`, { digest });
      if (kind !== 0o100000) {
        throw new BktError('INVALID_ARGUMENT', `OCI layout "${dir.name}": blob ${digest} is not a regular file (${FILE_KINDS[kind] ?? 'not a file'})`, { digest });
      }
      return st.size;
    },
    readBlob: (digest, signal) => dir.read(blobPath(digest), signal),
  };
}

/**
 * Blobs of an OCI image layout, copied into the content store verified. The
 * layout is the user's input, so each blob is held to what its descriptor
 * says: a regular file of the layout (see `LayoutDir.blobSize`) of exactly
 * `desc.size` bytes, at most that many bytes are read, and the content store
 * checks the digest before committing.
 */
export function layoutBlobs(layout: LayoutDir): BlobProvider {
  const copy = async (desc: Descriptor, ctx: Pick<BuildContext, 'content' | 'signal'>, store = contentWriter(ctx.content, desc.digest)) => {
    throwIfCancelled(layout.name, ctx.signal);
    const size = await layout.blobSize(desc.digest, ctx.signal);
    if (size !== desc.size) {
      throw new BktError('INVALID_ARGUMENT', `OCI layout "${layout.name}": blob ${desc.digest} has ${size} bytes, its descriptor says ${desc.size}`, { digest: desc.digest });
    }
    const chunks = desc.size === 0 ? emptyStream() : atMost(layout.readBlob(desc.digest, ctx.signal), desc.size);
    await store(untilCancelled(chunks, layout.name, ctx.signal));
  };
  return {
    async read(desc, ctx) {
      throwIfCancelled(layout.name, ctx.signal);
      const have = await readFromContent(ctx.content, desc.digest);
      if (have) return have;
      await copy(desc, ctx);
      return new Uint8Array(await readFile(ctx.content.path(desc.digest)));
    },
    async fetch(desc, ctx, store) {
      throwIfCancelled(layout.name, ctx.signal);
      if (!(await ctx.content.has(desc.digest))) await copy(desc, ctx, store);
    },
  };
}

async function* emptyStream(): AsyncGenerator<Uint8Array> {}

/** The first `limit` bytes of `chunks` (a file that grew after its stat is cut, and then fails the digest check). */
async function* atMost(chunks: AsyncIterable<Uint8Array>, limit: number): AsyncGenerator<Uint8Array> {
  let left = limit;
  for await (const chunk of chunks) {
    if (left <= 0) return;
    const part = chunk.length > left ? chunk.subarray(0, left) : chunk;
    left -= part.length;
    yield part;
  }
}

function throwIfCancelled(name: string, signal: AbortSignal): void {
  if (signal.aborted) throw new BktError('CANCELLED', `reading OCI layout "${name}" cancelled`);
}

/** `chunks`, stopping with CANCELLED once `signal` is aborted. */
async function* untilCancelled(chunks: AsyncIterable<Uint8Array>, name: string, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) {
    throwIfCancelled(name, signal);
    yield chunk;
  }
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
