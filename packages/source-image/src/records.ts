/**
 * What bkt remembers about images beside the solver's store, as small JSON
 * files under the store root (each written to a temporary file, then renamed):
 *
 *   image-layers/snapshots/<snapshot id>.json   the layer a snapshot was unpacked from
 *   image-layers/chains/<chain id hex>.json      the snapshot holding an image's tree up to that layer
 *   images/<sha256 of name>.json                 a named image (the image exporter's `store=true`, read by `image.resolvemode=local`)
 *
 * A layer record lets the image exporter reuse the pulled, compressed blob as
 * it is (same digest, no re-compression, a cross-repository mount on push); a
 * chain record lets two images with the same base layers share snapshots.
 * A record whose snapshot was pruned is ignored (callers check the snapshot).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Digest, Snapshot, Snapshotter } from '@bkt/core';
import type { Descriptor } from '@bkt/oci';

/** The layer a snapshot's own changes came from. */
export interface LayerRecord {
  snapshotId: string;
  /** sha256 of the uncompressed layer tar (the image config's `rootfs.diff_ids` entry). */
  diffId: Digest;
  /** The chain id of the image's layers up to and including this one (OCI image-spec). */
  chainId: Digest;
  /** The compressed blob as the image had it; it is in the content store. */
  blob: Descriptor;
  /** `registry/repository` names the blob was pulled from (for cross-repository mounts). */
  sources: string[];
}

/** A named image in the local image store. */
export interface ImageRecord {
  name: string;
  /** The image's manifest or index; its bytes (and everything below) are in the content store. */
  target: Descriptor;
}

const hex = (d: string) => d.replace(/^sha256:/, '');

async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, JSON.stringify(value));
  await rename(tmp, path);
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof SyntaxError) return undefined; // a torn file from before rename-on-write: treat as absent
    throw err;
  }
}

/** OCI chain ids: chainId(0) = diffId(0); chainId(n) = sha256(chainId(n-1) + " " + diffId(n)). */
export function chainIds(diffIds: Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev ? (`sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}` as Digest) : d);
  }
  return out;
}

export async function writeLayerRecord(root: string, record: LayerRecord): Promise<void> {
  await writeJsonAtomic(join(root, 'image-layers', 'snapshots', `${record.snapshotId}.json`), record);
  await writeJsonAtomic(join(root, 'image-layers', 'chains', `${hex(record.chainId)}.json`), { snapshotId: record.snapshotId });
}

/** The layer snapshot `snapshotId` was unpacked from, if it was. */
export function readLayerRecord(root: string, snapshotId: string): Promise<LayerRecord | undefined> {
  return readJson<LayerRecord>(join(root, 'image-layers', 'snapshots', `${snapshotId}.json`));
}

/** Adds a repository a layer's blob is known to be in. */
export async function addLayerSource(root: string, record: LayerRecord, source: string): Promise<void> {
  if (record.sources.includes(source)) return;
  await writeJsonAtomic(join(root, 'image-layers', 'snapshots', `${record.snapshotId}.json`), {
    ...record,
    sources: [...record.sources, source],
  });
}

/** The snapshot holding the tree of `chainId`, when it is still in the store. */
export async function snapshotForChain(root: string, snapshotter: Snapshotter, chainId: Digest): Promise<Snapshot | undefined> {
  const rec = await readJson<{ snapshotId: string }>(join(root, 'image-layers', 'chains', `${hex(chainId)}.json`));
  if (!rec) return undefined;
  try {
    return await snapshotter.get(rec.snapshotId);
  } catch {
    return undefined; // pruned
  }
}

const imagePath = (root: string, name: string) =>
  join(root, 'images', `${createHash('sha256').update(name).digest('hex')}.json`);

export function writeImageRecord(root: string, record: ImageRecord): Promise<void> {
  return writeJsonAtomic(imagePath(root, record.name), record);
}

export function readImageRecord(root: string, name: string): Promise<ImageRecord | undefined> {
  return readJson<ImageRecord>(imagePath(root, name));
}
