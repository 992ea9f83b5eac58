/**
 * The `image`, `oci` and `docker` exporters. Each builds the result's image
 * into the content store (image.ts), then: `image` records it in the local
 * image store under its names (`store=true`; each name `image:NAME` references
 * all the image's blobs in the content store) and pushes it (`push=true`);
 * `oci` writes an OCI layout; `docker` a docker archive.
 *
 * Compression happens where bytes leave the machine. An `image` export that
 * only names the image into the local store (no push, and no `compression`,
 * `compression-level` or `force-compression` given) keeps its new layers
 * uncompressed, as docker's image store does for `docker build -t`: it costs
 * a tar and a sha256, no compression. A push, an OCI layout or a docker
 * archive compresses them (gzip by default), each compressed blob made once.
 *
 * The response carries BuildKit's keys: `containerimage.digest`,
 * `containerimage.config.digest` (single-platform), `containerimage.descriptor`
 * (base64 JSON) and `image.name`.
 */
import { BktError, requireRecords, SOURCE_DATE_EPOCH_KEY, type Attrs, type BlobOwner, type BuildContext, type BuildResult, type ContentStore, type Exporter, type ExporterInstance } from '@bkt/core';
import { formatReference, parseReference, writeImageRecord, type Descriptor } from '@bkt/oci';
import { RegistryClient, buildClientCredentials, staticCredentials, type RegistrySettings } from '@bkt/registry';
import { parseExportAttrs, parseSourceDateEpoch, type ExportOptions, type ExporterType } from './attrs.js';
import { buildImage, type BuiltImage } from './image.js';
import { writeDockerArchive, writeOciLayout } from './layout.js';
import { pushImage } from './push.js';

export interface ImageExportersOptions {
  /**
   * The registry client whose connections, settings and concurrency limit
   * pushes share; default: one made from `registry`. Its own credentials are
   * never used: each push takes its build's, from the build's client.
   */
  client?: RegistryClient;
  /** Settings of the default client: per-registry `hosts` (plain HTTP, insecure TLS), `concurrency`, `retry`. */
  registry?: RegistrySettings;
}

/** SOURCE_DATE_EPOCH of an export: the `source-date-epoch` attribute, else the result's `source.date.epoch` metadata. */
function sourceDateEpochOf(opts: ExportOptions, result: BuildResult): number | undefined {
  if (opts.sourceDateEpoch !== undefined) return opts.sourceDateEpoch;
  const meta = result.metadata[SOURCE_DATE_EPOCH_KEY];
  if (meta === undefined || meta.length === 0) return undefined;
  return parseSourceDateEpoch(Buffer.from(meta).toString('utf8'), 'build-arg:SOURCE_DATE_EPOCH');
}

/** The exporter response for a built image. */
export function exporterResponse(image: BuiltImage, names: string[]): Record<string, string> {
  const res: Record<string, string> = {
    'containerimage.digest': image.root.digest,
    'containerimage.descriptor': Buffer.from(JSON.stringify(image.root)).toString('base64'),
  };
  if (image.manifests.length === 1 && image.manifests[0].descriptor.digest === image.root.digest) {
    res['containerimage.config.digest'] = image.manifests[0].config.digest;
  }
  if (names.length) res['image.name'] = names.join(',');
  return res;
}

class ImageExporterInstance implements ExporterInstance {
  constructor(
    private readonly opts: ExportOptions,
    private readonly shared: ImageExportersOptions & { defaultClient: () => RegistryClient },
  ) {}

  async export(result: BuildResult, ctx: BuildContext): Promise<Record<string, string>> {
    const o = this.opts;
    const sourceDateEpoch = sourceDateEpochOf(o, result);
    throwIfCancelled(o.type, ctx.signal);
    const localOnly = o.type === 'image' && !o.push && !o.pushByDigest && !o.compressionSet;
    // A layout or archive holds the configs and manifests; the content store keeps only the layers (made once per snapshot).
    const storeMetadata = o.type === 'image';
    const image = await buildImage(result, ctx, { ...o, sourceDateEpoch, storeMetadata, ...(localOnly ? { compression: 'uncompressed' as const } : {}) });
    // Building the layers may take long; nothing is written for a cancelled build.
    throwIfCancelled(o.type, ctx.signal);
    const names = o.names;
    if (o.type === 'oci' || o.type === 'docker') {
      const write = o.type === 'oci' ? writeOciLayout : writeDockerArchive;
      const mtime = sourceDateEpoch !== undefined ? new Date(sourceDateEpoch * 1000) : new Date(0);
      await write(image, ctx.content, { names, dest: o.dest!, tar: o.tar, mtime, client: ctx.client });
      return exporterResponse(image, names);
    }
    if (o.store) {
      const stored = [...names];
      if (o.nameCanonical) stored.push(...names.map((n) => `${stripTagAndDigest(n)}@${image.root.digest}`));
      if (names.length === 0 && o.danglingNamePrefix) stored.push(`${o.danglingNamePrefix}@${image.root.digest}`);
      for (const name of stored) {
        const canonical = formatReference(parseReference(name));
        await referenceImageBlobs(ctx.content, imageBlobOwner(canonical), image.blobs);
        await writeImageRecord(requireRecords(ctx, '@bkt/exporter-oci'), { name: canonical, target: image.root });
      }
    }
    if (o.push || o.pushByDigest) {
      await this.#withClient(names, ctx, (client) => pushImage(image, names, client, ctx, { byDigest: o.pushByDigest && !o.push }));
    }
    return exporterResponse(image, names);
  }

  /**
   * Runs `fn` with the registry client of `ctx`'s build: a view of the shared
   * client with the build's credentials (asked of its client, as BuildKit's
   * pusher asks the session's Auth service), so nothing one build's
   * credentials obtained serves another's push.
   */
  async #withClient(names: string[], ctx: BuildContext, fn: (c: RegistryClient) => Promise<void>): Promise<void> {
    const credentials = buildClientCredentials(ctx.client);
    if (!this.opts.insecure) return fn((this.shared.client ?? this.shared.defaultClient()).withCredentials(credentials));
    // registry.insecure, as BuildKit's push: HTTPS without certificate verification, falling back to plain HTTP.
    const base = this.shared.registry ?? {};
    const hosts = { ...base.hosts };
    for (const n of names) {
      const host = parseReference(n).registry;
      hosts[host] = { ...hosts[host], insecure: true, http: hosts[host]?.http ?? true };
    }
    const client = new RegistryClient({ ...base, hosts, credentials });
    try {
      await fn(client);
    } finally {
      client.close();
    }
  }
}

function throwIfCancelled(type: string, signal: AbortSignal): void {
  if (signal.aborted) throw new BktError('CANCELLED', `${type} exporter: build cancelled`);
}

/** The blob owner of a name of the local image store: `image:NAME`. */
export function imageBlobOwner(name: string): BlobOwner {
  return { name: `image:${name}` };
}

/**
 * Makes `owner` reference exactly `blobs` (every blob of the image: layers,
 * configs, manifests, index), dropping what it referenced before (the image
 * the name had), so a prune keeps a stored image whole until its name moves.
 */
export async function referenceImageBlobs(content: ContentStore, owner: BlobOwner, blobs: Descriptor[]): Promise<void> {
  if (!content.addRef) return;
  const keep = new Set(blobs.map((b) => b.digest));
  for (const b of blobs) await content.addRef(b.digest, owner);
  for (const old of (await content.refs?.(owner)) ?? []) {
    if (!keep.has(old.digest)) await content.removeRef?.(old.digest, owner);
  }
}

function stripTagAndDigest(name: string): string {
  const r = parseReference(name);
  return `${r.registry}/${r.repository}`;
}

/** The three exporters, sharing one registry client (made on first push; each build pushes through its own view of it). */
export function createImageExporters(opts: ImageExportersOptions = {}): { exporters: Exporter[]; close(): void } {
  if (opts.registry && 'credentials' in opts.registry) {
    throw new BktError('CONFIG', '@bkt/exporter-oci: the registry option takes no credentials: each build\'s come from its client (for the bkt CLI, docker\'s config file)', {
      attribute: 'registry.credentials',
    });
  }
  let client: RegistryClient | undefined;
  const shared = {
    ...opts,
    defaultClient: () => (client ??= new RegistryClient({ ...opts.registry, credentials: staticCredentials({}) })),
  };
  const make = (type: ExporterType): Exporter => ({
    type,
    resolve: async (attrs: Attrs) => new ImageExporterInstance(parseExportAttrs(type, attrs), shared),
  });
  return {
    exporters: [make('image'), make('oci'), make('docker')],
    close: () => {
      client?.close();
      client = undefined;
    },
  };
}
