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
import { createReadStream } from 'node:fs';
import { BktError, requireRecords, type BuildContext, type Digest, type Snapshot, type Snapshotter, type StoreRecords } from '@bkt/core';
import { decompress } from './compression.js';
import { digesting } from './digest.js';
import type { Descriptor } from './media-types.js';
import { unpackLayer } from './unpack.js';

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

/** One layer of an image (or of a cache result) to unpack: its blob and uncompressed digest. */
export interface LayerToUnpack {
  blob: Descriptor;
  diffId: Digest;
}

export interface UnpackLayersOptions {
  /** Names the image or cache in progress and errors. */
  what: string;
  /** Brings a layer blob into the content store (a no-op when it is there). */
  fetch(blob: Descriptor): Promise<void>;
  /** `registry/repository` names the blobs are in (for cross-repository mounts). */
  sources: string[];
  /** The usage record type of the snapshots made. */
  recordType?: string;
  /** Reported before a layer is unpacked and when it is done. */
  onLayer?(blob: Descriptor, done: boolean): void;
  /** Reports something skipped while unpacking. */
  warn?(message: string): void;
}

/**
 * The snapshot of a layer stack: layers already unpacked (found by chain id)
 * are reused and their blobs never fetched; the others are fetched (in
 * parallel) and unpacked in order, one snapshot each, each verified against
 * its diff id and recorded (layer and chain records). An empty stack is an
 * empty tree.
 */
export async function unpackLayers(layers: LayerToUnpack[], ctx: Pick<BuildContext, 'snapshotter' | 'content' | 'records'>, opts: UnpackLayersOptions): Promise<Snapshot> {
  const records = requireRecords(ctx, opts.what);
  const chains = chainIds(layers.map((l) => l.diffId));
  let parent: Snapshot | null = null;
  let start = 0;
  for (let i = layers.length - 1; i >= 0; i--) {
    const found = await snapshotForChain(records, ctx.snapshotter, chains[i]);
    if (found) {
      parent = found;
      start = i + 1;
      break;
    }
  }
  // Downloads run ahead (the caller's client bounds them); unpacking follows in layer order.
  const downloads = layers.map((l, i) => (i >= start ? opts.fetch(l.blob) : Promise.resolve()));
  for (const d of downloads) d.catch(() => undefined);
  for (let i = start; i < layers.length; i++) {
    const { blob, diffId } = layers[i];
    const what = `layer ${i + 1}/${layers.length} (${blob.digest}) of ${opts.what}`;
    await downloads[i];
    opts.onLayer?.(blob, false);
    const mutable = await ctx.snapshotter.prepare(parent, { description: `pulled ${what}`, recordType: opts.recordType });
    try {
      const plain = digesting(decompress(createReadStream(ctx.content.path(blob.digest)), what));
      await unpackLayer(mutable.path, plain.chunks, { base: parent === null, what, warn: opts.warn });
      const got = plain.digest();
      if (got !== diffId) throw new BktError('INVALID_ARGUMENT', `${what}: uncompressed content has digest ${got}, but its diff id is ${diffId}`);
    } catch (err) {
      await mutable.discard();
      throw err;
    }
    const snapshot = await mutable.commit();
    // The snapshot keeps its layer blob: a prune removes the blob only with the snapshot.
    await ctx.content.addRef?.(blob.digest, { snapshot: snapshot.id });
    opts.onLayer?.(blob, true);
    await writeLayerRecord(records, {
      snapshotId: snapshot.id,
      diffId,
      chainId: chains[i],
      blob: { mediaType: blob.mediaType, digest: blob.digest, size: blob.size },
      sources: opts.sources,
    }, opts.recordType);
    parent = snapshot;
  }
  if (parent) return parent;
  const empty = await ctx.snapshotter.prepare(null, { description: `empty ${opts.what}` });
  return empty.commit();
}
