/**
 * The images the `image` exporter stored by name (`store=true`), as a user
 * sees them: listed with their platforms, size and creation time, removed
 * (the record and the name's blob references, so a prune can reclaim what
 * nothing else keeps), and saved as a docker-archive or OCI-layout tar read
 * back from the content store alone.
 */
import { readFile } from 'node:fs/promises';
import { BktError, type BuildClient, type ContentStore, type Digest, type Platform, type StoreRecords } from '@bkt/core';
import {
  checkDescriptor,
  formatReference,
  isIndexMediaType,
  listImageRecords,
  normalizePlatform,
  parseReference,
  readImageRecord,
  removeImageRecord,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
} from '@bkt/oci';
import { imageBlobOwner } from './exporters.js';
import type { BuiltImage, BuiltManifest } from './image.js';
import { writeDockerArchive, writeOciLayout } from './layout.js';

/** What the stored-image functions read and change: the store's records and content store. */
export interface ImageStore {
  records: StoreRecords;
  content: ContentStore;
}

/** A named image of the local image store. */
export interface StoredImage {
  /** The canonical name (`docker.io/library/app:latest`). */
  name: string;
  /** Its manifest, or index of a multi-platform image. */
  target: Descriptor;
  /** The image id (config digest) of a single-platform image. */
  configDigest?: Digest;
  platforms: Platform[];
  /** Bytes of all its blobs as stored (compressed layers, configs, manifests, index), each counted once. */
  size: number;
  /** The newest `created` of its configs, when they have one. */
  created?: Date;
}

/** `app`, `app:1`, `reg.example/app@sha256:…` → the canonical name images are stored under. */
export function canonicalImageName(name: string): string {
  return formatReference(parseReference(name));
}

/** Every stored image, by name. */
export async function listStoredImages(store: ImageStore): Promise<StoredImage[]> {
  const out: StoredImage[] = [];
  for (const record of await listImageRecords(store.records)) {
    const image = await loadImage(store.content, record.name, record.target);
    out.push(describe(record.name, image));
  }
  return out;
}

/**
 * Removes the image stored under `name` (any form of it) and the name's
 * references to its blobs; returns the removed image's canonical name. A
 * later prune removes the blobs nothing else references. `NOT_FOUND` names
 * the stored images when there is none by that name.
 */
export async function removeStoredImage(store: ImageStore, name: string): Promise<string> {
  const canonical = canonicalImageName(name);
  if (!(await readImageRecord(store.records, canonical))) throw await notStored(store, name, canonical);
  // References first: a removal cut short leaves the record, so running it again finishes the job.
  const owner = imageBlobOwner(canonical);
  for (const ref of (await store.content.refs?.(owner)) ?? []) await store.content.removeRef?.(ref.digest, owner);
  await removeImageRecord(store.records, canonical);
  return canonical;
}

export interface SaveOptions {
  /** `docker` (a `docker load` archive, one platform) or `oci` (an OCI image layout tar). */
  format: 'docker' | 'oci';
  /** The tar file to write (`-` = the client's stdout). */
  dest: string;
  /** The client whose file `dest` names. */
  client: BuildClient;
  /** Names the errors of writing `dest` (e.g. `bkt image save -o`). */
  what: string;
}

/** Writes the image stored under `name` as a tar, from the content store alone; returns it. */
export async function saveStoredImage(store: ImageStore, name: string, opts: SaveOptions): Promise<StoredImage> {
  const canonical = canonicalImageName(name);
  const record = await readImageRecord(store.records, canonical);
  if (!record) throw await notStored(store, name, canonical);
  const image = await loadImage(store.content, canonical, record.target);
  if (opts.format === 'docker' && image.manifests.length !== 1) {
    throw new BktError(
      'INVALID_ARGUMENT',
      `${opts.what}: ${canonical} holds ${image.manifests.length} platforms and a docker archive holds one; save it with --format oci`,
      { attribute: 'format' },
    );
  }
  const write = opts.format === 'docker' ? writeDockerArchive : writeOciLayout;
  await write(image, store.content, { names: [canonical], dest: opts.dest, tar: true, client: opts.client, what: opts.what });
  return describe(canonical, image);
}

async function notStored(store: ImageStore, given: string, canonical: string): Promise<BktError> {
  const names = (await listImageRecords(store.records)).map((r) => r.name);
  return new BktError('NOT_FOUND', `no image ${canonical} in the local image store (stored: ${names.length > 0 ? names.join(', ') : 'none'})`, {
    reference: given,
  });
}

function describe(name: string, image: LoadedImage): StoredImage {
  const created = image.created.filter((d) => !Number.isNaN(d.getTime())).sort((a, b) => b.getTime() - a.getTime())[0];
  return {
    name,
    target: image.root,
    ...(image.manifests.length === 1 ? { configDigest: image.manifests[0]!.config.digest } : {}),
    platforms: image.manifests.map((m) => m.platform),
    size: image.blobs.reduce((n, b) => n + b.size, 0),
    ...(created ? { created } : {}),
  };
}

type LoadedImage = BuiltImage & { created: Date[] };

/** Reads a stored image's index, manifests and configs back from the content store; a missing blob is an error naming it. */
async function loadImage(content: ContentStore, name: string, target: Descriptor): Promise<LoadedImage> {
  const blobs: Descriptor[] = [];
  const seen = new Set<string>();
  const add = (d: Descriptor) => {
    if (seen.has(d.digest)) return;
    seen.add(d.digest);
    blobs.push({ mediaType: d.mediaType, digest: d.digest, size: d.size });
  };
  const root = checkDescriptor(target, `stored image ${name}`);
  const manifests: BuiltManifest[] = [];
  const created: Date[] = [];
  const rootJson = await readJson<ImageManifest & ImageIndex>(content, root, name);
  const isIndex = isIndexMediaType(root.mediaType) || Array.isArray(rootJson.manifests);
  const entries: [Descriptor, ImageManifest][] = isIndex
    ? await Promise.all(
        (rootJson.manifests ?? []).map(async (m): Promise<[Descriptor, ImageManifest]> => {
          const d = checkDescriptor(m, `stored image ${name}: index`);
          return [d, await readJson<ImageManifest>(content, d, name)];
        }),
      )
    : [[root, rootJson]];
  for (const [descriptor, manifest] of entries) {
    const config = checkDescriptor(manifest.config, `stored image ${name}: manifest ${descriptor.digest}`);
    const configJson = await readJson<Partial<ImageConfig>>(content, config, name);
    const diffIds = configJson.rootfs?.diff_ids ?? [];
    const layers = (manifest.layers ?? []).map((l, i) => {
      const d = checkDescriptor(l, `stored image ${name}: manifest ${descriptor.digest}`);
      return { descriptor: d, diffId: (diffIds[i] ?? d.digest) as Digest, sources: [], snapshotId: '' };
    });
    for (const l of layers) {
      if (!(await content.has(l.descriptor.digest))) throw missing(name, l.descriptor.digest);
      add(l.descriptor);
    }
    add(config);
    const platform = descriptor.platform ?? { os: configJson.os ?? 'linux', architecture: configJson.architecture ?? 'unknown', ...(configJson.variant ? { variant: configJson.variant } : {}) };
    manifests.push({ platform: normalizePlatform(platform), descriptor, config, layers });
    if (typeof configJson.created === 'string') created.push(new Date(configJson.created));
  }
  for (const m of manifests) add(m.descriptor);
  if (isIndex) add(root);
  return { root, manifests, blobs, created };
}

/** Manifests, indexes and configs larger than this are refused, as the image source refuses them. */
const MAX_JSON_BYTES = 4 * 1024 * 1024;

async function readJson<T>(content: ContentStore, d: Descriptor, name: string): Promise<T> {
  if (!(await content.has(d.digest))) throw missing(name, d.digest);
  if (d.size > MAX_JSON_BYTES) throw new BktError('INVALID_ARGUMENT', `stored image ${name}: blob ${d.digest} has ${d.size} bytes, more than a manifest or config may`);
  const bytes = await readFile(content.path(d.digest));
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `stored image ${name}: blob ${d.digest} is not JSON`, {}, { cause: err });
  }
}

function missing(name: string, digest: string): BktError {
  return new BktError('NOT_FOUND', `stored image ${name} is incomplete: blob ${digest} is not in the content store`, { digest });
}
