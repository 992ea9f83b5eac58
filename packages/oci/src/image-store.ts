/**
 * The local image store: what bkt remembers about images, kept as records of
 * the store's records API (`ctx.records`), so that the image source and the
 * image exporters share it without importing each other.
 *
 *   image-layers/<snapshot id>    the layer a snapshot was unpacked from; keeps the snapshot
 *   image-chains/<chain id hex>   the snapshot holding an image's tree up to a layer; keeps it
 *   images/<sha256 hex of name>   a named image (the image exporter's `store=true`, read by
 *                                 `image.resolvemode=local`); pinned: no prune takes it
 *
 * A layer record lets the image exporter reuse the pulled, compressed blob as
 * it is (same digest, no re-compression, a cross-repository mount on push); a
 * chain record lets two images with the same base layers share snapshots.
 * Layer and chain records are build cache: a prune takes them, and then the
 * snapshots they kept.
 */
import { createHash } from 'node:crypto';
import type { Digest, Snapshot, Snapshotter, StoreRecords } from '@bkt/core';
import type { Descriptor } from './media-types.js';

/** The layer a snapshot's own changes came from. */
export interface LayerRecord {
  snapshotId: string;
  /** sha256 of the uncompressed layer tar (the image config's `rootfs.diff_ids` entry). */
  diffId: Digest;
  /** The chain id of the image's layers up to and including this one (OCI image-spec). */
  chainId: Digest;
  /** The compressed blob as the image had it; it is in the content store. */
  blob: Descriptor;
  /** `registry/repository` names the blob was pulled from or pushed to (for cross-repository mounts). */
  sources: string[];
}

/** A named image in the local image store. */
export interface ImageRecord {
  name: string;
  /** The image's manifest or index; its bytes (and everything below) are in the content store. */
  target: Descriptor;
}

const LAYERS = 'image-layers';
const CHAINS = 'image-chains';
const IMAGES = 'images';

const hex = (d: string) => d.replace(/^sha256:/, '');
const sha256Hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** OCI chain ids: chainId(0) = diffId(0); chainId(n) = sha256(chainId(n-1) + " " + diffId(n)). */
export function chainIds(diffIds: Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev ? (`sha256:${sha256Hex(`${prev} ${d}`)}` as Digest) : d);
  }
  return out;
}

/**
 * Records that `record.snapshotId` was unpacked from `record.blob`, and that
 * it holds the tree of `record.chainId`. `recordType` is the snapshot's (a
 * prune treats the records as it treats the snapshot; default `regular`).
 */
export async function writeLayerRecord(records: StoreRecords, record: LayerRecord, recordType = 'regular'): Promise<void> {
  const snapshots = [record.snapshotId];
  await records.namespace(LAYERS).put(record.snapshotId, {
    recordType,
    description: `layer ${record.blob.digest}`,
    snapshots,
    data: { diffId: record.diffId, chainId: record.chainId, blob: JSON.stringify(record.blob), sources: JSON.stringify(record.sources) },
  });
  await records.namespace(CHAINS).put(hex(record.chainId), {
    recordType,
    description: `image layers up to ${record.chainId}`,
    snapshots,
    data: { snapshotId: record.snapshotId },
  });
}

/** The layer snapshot `snapshotId` was unpacked from, if it was. */
export async function readLayerRecord(records: StoreRecords, snapshotId: string): Promise<LayerRecord | undefined> {
  const r = await records.namespace(LAYERS).get(snapshotId);
  if (!r) return undefined;
  return {
    snapshotId,
    diffId: r.data.diffId as Digest,
    chainId: r.data.chainId as Digest,
    blob: JSON.parse(r.data.blob ?? '{}') as Descriptor,
    sources: JSON.parse(r.data.sources ?? '[]') as string[],
  };
}

/** Adds a repository a layer's blob is known to be in. */
export async function addLayerSource(records: StoreRecords, record: LayerRecord, source: string): Promise<void> {
  if (record.sources.includes(source)) return;
  const layers = records.namespace(LAYERS);
  const current = await layers.get(record.snapshotId);
  if (!current) return; // pruned meanwhile
  const { recordType, description, mutable, pinned, snapshots, blobs, data } = current;
  await layers.put(record.snapshotId, { recordType, description, mutable, pinned, snapshots, blobs, data: { ...data, sources: JSON.stringify([...record.sources, source]) } });
}

/** The snapshot holding the tree of `chainId`, when it is still in the store. */
export async function snapshotForChain(records: StoreRecords, snapshotter: Snapshotter, chainId: Digest): Promise<Snapshot | undefined> {
  const chains = records.namespace(CHAINS);
  const r = await chains.get(hex(chainId));
  if (!r?.data.snapshotId) return undefined;
  try {
    const snapshot = await snapshotter.get(r.data.snapshotId);
    await chains.touch(hex(chainId));
    return snapshot;
  } catch {
    return undefined; // pruned meanwhile
  }
}

/** Stores `record` under its name, replacing an image of that name. */
export async function writeImageRecord(records: StoreRecords, record: ImageRecord): Promise<void> {
  await records.namespace(IMAGES).put(sha256Hex(record.name), {
    recordType: 'image',
    description: `${record.name} (${record.target.digest})`,
    pinned: true,
    data: { name: record.name, target: JSON.stringify(record.target) },
  });
}

/** The image stored under `name`, if any. */
export async function readImageRecord(records: StoreRecords, name: string): Promise<ImageRecord | undefined> {
  const r = await records.namespace(IMAGES).get(sha256Hex(name));
  if (!r) return undefined;
  return { name, target: JSON.parse(r.data.target ?? '{}') as Descriptor };
}

/** Every named image of the store, by name. */
export async function listImageRecords(records: StoreRecords): Promise<ImageRecord[]> {
  const all = await records.namespace(IMAGES).list();
  return all
    .filter((r) => r.data.name !== undefined)
    .map((r) => ({ name: r.data.name!, target: JSON.parse(r.data.target ?? '{}') as Descriptor }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Removes the image stored under `name`; returns whether there was one. The
 * blobs it named stay until a prune finds nothing else referencing them.
 */
export async function removeImageRecord(records: StoreRecords, name: string): Promise<boolean> {
  const images = records.namespace(IMAGES);
  const id = sha256Hex(name);
  if (!(await images.get(id))) return false;
  await images.remove(id);
  return true;
}
