/**
 * The `docker-image` and `oci-layout` sources.
 *
 * `docker-image://REF` — attrs as BuildKit's: `image.resolvemode`
 * (`default`: ask the registry for a tag's digest, use local content for a
 * pinned digest; `pull`: always ask the registry; `local`: prefer the local
 * image store, fall back to the registry), `image.recordtype`,
 * `image.layerlimit`, `image.checksum`. The platform is the op's, else the host's.
 *
 * `oci-layout://NAME[:TAG][@DIGEST]` — an image of an OCI layout directory
 * given to the build as a local directory: `client.localDir(attrs['oci.store'] ?? NAME)`
 * (BuildKit's `oci.store` is the id of the client's layout store).
 *
 * The cache key is the platform's manifest digest; the pin is
 * `docker-image://REF@DIGEST` with the digest the reference resolved to.
 * Layers are downloaded once into the content store and each is unpacked
 * into its own snapshot over the previous one (see `records.ts`); each
 * snapshot references its layer blob, so the blob lives as long as it does.
 */
import { readFile } from 'node:fs/promises';
import {
  BktError,
  type Attrs,
  type BuildClient,
  type BuildContext,
  type Digest,
  type ImageConfigResolver,
  type ImageResolveMode,
  type Platform,
  type Snapshot,
  type Source,
  type SourceIdentifier,
  type SourceInstance,
  requireRecords,
} from '@bkt/core';
import {
  MediaType,
  checkDescriptor,
  formatReference,
  hostPlatform,
  isDigest,
  normalizePlatform,
  parseReference,
  repositoryName,
  splitReference,
  type Descriptor,
  type ImageIndex,
  readImageRecord,
  unpackLayers,
} from '@bkt/oci';
import type { RegistryClient, RegistrySettings } from '@bkt/registry';
import { contentBlobs, layoutBlobs, layoutDir, registryBlobs, resolvePlatformImage, type BlobProvider, type ResolvedImage } from './image.js';

export type ResolveMode = ImageResolveMode;

export interface ImageSourceOptions {
  /**
   * The registry client whose connections, settings and concurrency limit
   * the pulls share; default: one made from `registry`, closed on shutdown.
   * Its own credentials are never used: each build's come from its client.
   */
  client?: RegistryClient;
  /** Settings of the default client: per-registry `hosts` (plain HTTP, insecure TLS, mirrors), `concurrency`, `retry`. */
  registry?: RegistrySettings;
}

/** The parsed attrs of an image source op. */
interface ImageAttrs {
  resolveMode: ResolveMode;
  recordType?: string;
  layerLimit?: number;
  checksum?: Digest;
}

const OCI_REF_NAME = 'org.opencontainers.image.ref.name';

function parseImageAttrs(scheme: string, ref: string, attrs: Attrs): ImageAttrs {
  const out: ImageAttrs = { resolveMode: 'default' };
  const bad = (attribute: string, why: string) =>
    new BktError('INVALID_ARGUMENT', `${scheme}://${ref}: attribute ${attribute}=${JSON.stringify(attrs[attribute])} ${why}`, { attribute });
  const mode = attrs['image.resolvemode'];
  if (mode !== undefined && mode !== '') {
    // BuildKit also spells them forcepull / preferlocal.
    const m = { default: 'default', pull: 'pull', forcepull: 'pull', local: 'local', preferlocal: 'local' }[mode];
    if (!m) throw bad('image.resolvemode', 'is not one of default, pull, local');
    out.resolveMode = m as ResolveMode;
  }
  if (attrs['image.recordtype']) out.recordType = attrs['image.recordtype'];
  const limit = attrs['image.layerlimit'] ?? attrs['oci.layerlimit'];
  if (limit !== undefined) {
    const n = Number(limit);
    if (!Number.isInteger(n) || n < 0) throw bad(attrs['image.layerlimit'] !== undefined ? 'image.layerlimit' : 'oci.layerlimit', 'is not a non-negative integer');
    out.layerLimit = n;
  }
  const checksum = attrs['image.checksum'];
  if (checksum !== undefined && checksum !== '') {
    if (!isDigest(checksum)) throw bad('image.checksum', 'is not a sha256 digest');
    out.checksum = checksum;
  }
  return out;
}

/** `NAME[:TAG][@DIGEST]` of an `oci-layout://` identifier. */
interface LayoutRef {
  name: string;
  tag?: string;
  digest?: Digest;
}

export function parseLayoutRef(ref: string): LayoutRef {
  const { name, tag, digest } = splitReference(ref);
  if (digest !== undefined && !isDigest(digest)) {
    throw new BktError('INVALID_ARGUMENT', `invalid oci-layout reference "${ref}": "${digest}" is not a sha256 digest`);
  }
  if (name === '' || name.split('/').some((c) => c === '' || c === '.' || c === '..')) {
    throw new BktError('INVALID_ARGUMENT', `invalid oci-layout reference "${ref}": want STORE[:TAG][@sha256:…]`);
  }
  return { name, tag, digest };
}

/**
 * The image sources' shared state: one registry client, of which each build
 * pulls through its own view, with its own credentials (asked of the build's
 * client, as BuildKit's resolver asks the session's Auth service). Declares
 * the `ImageConfigResolver` capability, for `docker-image://` and
 * `oci-layout://` refs.
 */
export class ImageSource implements Source, ImageConfigResolver {
  readonly schemes = ['docker-image', 'oci-layout'] as const;
  #client: RegistryClient | undefined;
  readonly #ownsClient: boolean;
  /** Each build's view of the client, by the build's client (gone with the build). */
  #views = new WeakMap<BuildClient, RegistryClient>();

  constructor(private readonly opts: ImageSourceOptions = {}) {
    if (opts.registry && 'credentials' in opts.registry) {
      throw new BktError('CONFIG', '@bkt/source-image: the registry option takes no credentials: each build\'s come from its client (for the bkt CLI, docker\'s config file)', {
        attribute: 'registry.credentials',
      });
    }
    this.#client = opts.client;
    this.#ownsClient = !opts.client;
  }

  /**
   * The registry client of `ctx`'s build: the shared client's connections and settings (the shared client is
   * anonymous), the build's credentials. `@bkt/registry` loads here, on the first registry lookup: a build whose
   * images are all in the store never loads it.
   */
  async #registryFor(ctx: Pick<BuildContext, 'client'>): Promise<RegistryClient> {
    let view = this.#views.get(ctx.client);
    if (!view) {
      const { RegistryClient, buildClientCredentials, staticCredentials } = await import('@bkt/registry');
      this.#client ??= new RegistryClient({ ...this.opts.registry, credentials: staticCredentials({}) });
      view = this.#views.get(ctx.client) ?? this.#client.withCredentials(buildClientCredentials(ctx.client));
      this.#views.set(ctx.client, view);
    }
    return view;
  }

  /** Frees the client's connections (when this source made it). */
  close(): void {
    if (this.#ownsClient) this.#client?.close();
    if (this.#ownsClient) this.#client = undefined;
    this.#views = new WeakMap();
  }

  identify(scheme: string, ref: string, attrs: Attrs, platform?: Platform): SourceIdentifier {
    if (scheme === 'docker-image') {
      const parsed = parseReference(ref); // throws naming the reference
      parseImageAttrs(scheme, ref, attrs);
      return { scheme, ref: formatReference(parsed), attrs: { ...attrs }, platform: normalizePlatform(platform ?? hostPlatform()) };
    }
    if (scheme === 'oci-layout') {
      parseLayoutRef(ref);
      parseImageAttrs(scheme, ref, attrs);
      return { scheme, ref, attrs: { ...attrs }, platform: normalizePlatform(platform ?? hostPlatform()) };
    }
    throw new BktError('INVALID_ARGUMENT', `the image source does not handle "${scheme}://" identifiers`);
  }

  async resolve(id: SourceIdentifier, ctx: BuildContext): Promise<SourceInstance> {
    const attrs = parseImageAttrs(id.scheme, id.ref, id.attrs);
    const platform = id.platform ?? hostPlatform();
    const image =
      id.scheme === 'oci-layout'
        ? await this.#resolveLayout(id.ref, id.attrs, platform, ctx)
        : await this.resolveImage(id.ref, platform, attrs.resolveMode, ctx);
    if (attrs.checksum && attrs.checksum !== image.digest && attrs.checksum !== image.manifestDescriptor.digest) {
      throw new BktError('INVALID_ARGUMENT', `${id.scheme}://${id.ref}: resolved to ${image.digest}, not ${attrs.checksum} as image.checksum requires`, {
        attribute: 'image.checksum',
      });
    }
    const what = `${id.scheme}://${id.ref}`;
    const pinName = id.scheme === 'oci-layout' ? parseLayoutRef(id.ref).name : stripDigest(id.ref);
    return {
      cacheKey: async () => ({
        key: attrs.layerLimit !== undefined ? `${image.manifestDescriptor.digest}+layers=${attrs.layerLimit}` : image.manifestDescriptor.digest,
        pin: `${id.scheme}://${pinName}@${image.digest}`,
      }),
      snapshot: (c) => unpackImage(image, c, { what, layerLimit: attrs.layerLimit, recordType: attrs.recordType }),
    };
  }

  /**
   * Resolves a registry reference (or a name of the local image store) to
   * `platform`'s manifest and config, storing manifests and config in the
   * content store.
   */
  async resolveImage(
    ref: string,
    platform: Platform,
    mode: ResolveMode,
    ctx: Pick<BuildContext, 'root' | 'content' | 'signal' | 'records' | 'client'>,
  ): Promise<ResolvedImage> {
    const r = parseReference(ref);
    const name = formatReference(r);
    if (mode === 'local') {
      const record = await readImageRecord(requireRecords(ctx, '@bkt/source-image'), name);
      if (record) return resolvePlatformImage(record.target, platform, contentBlobs(name), ctx, name);
    }
    const repo = repositoryName(r);
    const registry = await this.#registryFor(ctx);
    const blobs = registryBlobs(registry, repo);
    let root: Descriptor | undefined;
    if (r.digest && mode !== 'pull' && (await ctx.content.has(r.digest))) {
      const bytes = await readFile(ctx.content.path(r.digest));
      const json = JSON.parse(bytes.toString('utf8')) as ImageIndex;
      root = { mediaType: json.mediaType ?? (Array.isArray(json.manifests) ? MediaType.OciIndex : MediaType.OciManifest), digest: r.digest, size: bytes.byteLength };
    }
    if (!root) {
      const notFound = (err: unknown) => {
        if (err instanceof BktError && err.code === 'NOT_FOUND') {
          throw new BktError('NOT_FOUND', `image ${name} not found: ${err.message}`, { reference: name }, { cause: err });
        }
        throw err;
      };
      // HEAD first (as BuildKit): a manifest already in the content store is not downloaded again.
      const head = await registry.headManifest(r, { signal: ctx.signal }).catch(notFound);
      if (!head) throw new BktError('NOT_FOUND', `image ${name} not found: ${r.registry} has no manifest for it`, { reference: name });
      if (head.mediaType && head.mediaType !== 'application/octet-stream' && (await ctx.content.has(head.digest))) {
        root = { mediaType: head.mediaType, digest: head.digest, size: head.size };
      } else {
        const fetched = await registry.getManifest({ ...r, digest: head.digest }, { signal: ctx.signal }).catch(notFound);
        if (!(await ctx.content.has(fetched.descriptor.digest))) await ctx.content.write(fetched.bytes, fetched.descriptor.digest);
        root = fetched.descriptor;
      }
    }
    return resolvePlatformImage(root, platform, blobs, ctx, name);
  }

  /** The image config of `ref` for `platform`, as the gateway's ResolveImageConfig answers it. */
  async resolveImageConfig(
    ref: string,
    opts: { platform?: Platform; resolveMode?: ResolveMode },
    ctx: Pick<BuildContext, 'root' | 'content' | 'signal' | 'client'>,
  ): Promise<{ ref: string; digest: Digest; config: Uint8Array }> {
    const platform = normalizePlatform(opts.platform ?? hostPlatform());
    if (ref.startsWith('oci-layout://')) {
      const image = await this.#resolveLayout(ref.slice('oci-layout://'.length), {}, platform, ctx);
      return { ref, digest: image.digest, config: image.configBytes };
    }
    const image = await this.resolveImage(ref.replace(/^docker-image:\/\//, ''), platform, opts.resolveMode ?? 'default', ctx);
    const name = stripDigest(formatReference(parseReference(ref.replace(/^docker-image:\/\//, ''))));
    return { ref: `${name}@${image.digest}`, digest: image.digest, config: image.configBytes };
  }

  async #resolveLayout(
    ref: string,
    attrs: Attrs,
    platform: Platform,
    ctx: Pick<BuildContext, 'content' | 'signal' | 'client'>,
  ): Promise<ResolvedImage> {
    const lr = parseLayoutRef(ref);
    const storeId = attrs['oci.store'] || lr.name;
    const dir = ctx.client.localDir(storeId);
    if (!dir) {
      const known = ctx.client.localDirNames().sort().join(', ') || 'none';
      throw new BktError('NOT_FOUND', `oci-layout://${ref}: the build has no OCI layout store "${storeId}" (local directories: ${known})`, {
        attribute: 'oci.store',
      });
    }
    if (ctx.signal.aborted) throw new BktError('CANCELLED', `oci-layout://${ref}: the build was cancelled`);
    const layout = layoutDir(dir);
    let index: ImageIndex;
    try {
      index = JSON.parse((await layout.readIndex(ctx.signal)).toString('utf8')) as ImageIndex;
    } catch (err) {
      if (ctx.signal.aborted) throw new BktError('CANCELLED', `oci-layout://${ref}: the build was cancelled`, {}, { cause: err });
      throw new BktError('NOT_FOUND', `oci-layout://${ref}: index.json of local directory "${storeId}" is missing or not JSON (is it an OCI layout?)`, {}, { cause: err });
    }
    const manifests = Array.isArray(index.manifests) ? index.manifests : [];
    const blobs = layoutBlobs(layout);
    let root: Descriptor | undefined;
    let entry: unknown;
    if (lr.digest) {
      entry = manifests.find((m) => m?.digest === lr.digest);
      if (entry === undefined) {
        // A digest the index does not list: its size is the blob file's (a regular file of the layout).
        const size = await layout.blobSize(lr.digest, ctx.signal);
        if (size > MAX_MANIFEST_BYTES) {
          throw new BktError('INVALID_ARGUMENT', `oci-layout://${ref}: blob ${lr.digest} has ${size} bytes, more than a manifest may (${MAX_MANIFEST_BYTES})`);
        }
        const bytes = await blobs.read({ mediaType: MediaType.OciManifest, digest: lr.digest, size }, ctx);
        const json = JSON.parse(Buffer.from(bytes).toString('utf8')) as ImageIndex;
        root = { mediaType: json.mediaType ?? (Array.isArray(json.manifests) ? MediaType.OciIndex : MediaType.OciManifest), digest: lr.digest, size };
      }
    } else {
      const tag = lr.tag ?? 'latest';
      entry = manifests.find((m) => m?.annotations?.[OCI_REF_NAME] === tag) ?? (lr.tag === undefined && manifests.length === 1 ? manifests[0] : undefined);
      if (entry === undefined) {
        const tags = manifests.map((m) => m?.annotations?.[OCI_REF_NAME]).filter(Boolean).join(', ') || 'none';
        throw new BktError('NOT_FOUND', `oci-layout://${ref}: the layout "${storeId}" has no image tagged "${tag}" (tags: ${tags})`);
      }
    }
    if (entry !== undefined) root = checkDescriptor(entry, `oci-layout://${ref}: index.json`);
    if (!root) throw new BktError('INTERNAL', `oci-layout://${ref}: no root descriptor`);
    return resolvePlatformImage(root, platform, blobs, ctx, `oci-layout://${ref}`);
  }
}

/** Manifests and indexes larger than this are refused, as containerd and the registry client do. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

function stripDigest(ref: string): string {
  const at = ref.indexOf('@');
  return at >= 0 ? ref.slice(0, at) : ref;
}

/**
 * The snapshot of an image's tree: layers already in the store (found by
 * chain id) are reused; the others are downloaded in parallel and unpacked
 * in order, one snapshot each, each download verified, decompressed, checked
 * against its `diff_id` and extracted in one pass (`unpackLayers`).
 */
export async function unpackImage(
  image: ResolvedImage,
  ctx: BuildContext,
  opts: { what: string; layerLimit?: number; recordType?: string },
): Promise<Snapshot> {
  const count = Math.min(image.manifest.layers.length, opts.layerLimit ?? Infinity);
  const diffIds = image.config.rootfs.diff_ids.slice(0, count);
  const layers = image.manifest.layers.slice(0, count).map((blob, i) => ({ blob, diffId: diffIds[i] }));
  const extract = (d: { digest: string }) => `extract ${d.digest}`;
  return unpackLayers(layers, ctx, {
    what: opts.what,
    fetch: (blob, store) => image.blobs.fetch(blob, ctx, store),
    sources: image.blobs.repository ? [image.blobs.repository] : [],
    recordType: opts.recordType,
    onLayer: (blob, done) => ctx.progress.status(extract(blob), `extracting ${blob.digest.slice(0, 19)}`, done ? 1 : 0, 1, done || undefined),
    warn: (msg) => ctx.progress.warn(msg),
  });
}

