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
import { BktError, requireRecords, type BuildContext, type Digest, type LazyLayer, type Snapshot, type Snapshotter, type StoreRecords } from '@bkt/core';
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
  /** When the layer was made where it came from (a cache's): a lazy snapshot of it is dated by it. */
  createdAt?: Date;
}

export interface UnpackLayersOptions {
  /** Names the image or cache in progress and errors. */
  what: string;
  /**
   * Fetches a layer blob the content store lacks: hands its bytes (a
   * registry's response, a client's file) to `store`, which writes them to
   * the content store — verifying the digest: a mismatch found at the end
   * fails it and keeps nothing — and may unpack them on the way.
   */
  fetch(blob: Descriptor, store: (bytes: AsyncIterable<Uint8Array>) => Promise<void>): Promise<void>;
  /** `registry/repository` names the blobs are in (for cross-repository mounts). */
  sources: string[];
  /** The usage record type of the snapshots made. */
  recordType?: string;
  /**
   * Only fetch the blobs: each layer becomes a lazy snapshot
   * (`Snapshotter.lazy`) whose tree is made on first use, as BuildKit's lazy
   * refs — for results nobody may need as a tree (an imported cache result:
   * an image export reuses the blobs as they are). Unpacked at once when the
   * snapshotter has no lazy snapshots.
   */
  lazy?: boolean;
  /** Reported before a layer is unpacked and when it is done. */
  onLayer?(blob: Descriptor, done: boolean): void;
  /** Reports something skipped while unpacking. */
  warn?(message: string): void;
}

/**
 * Applies a layer blob of the content store (`blobPath`) onto the writable
 * tree `dir`, verifying its uncompressed digest (core's `LayerApplier`, with
 * the content store's path).
 */
export async function applyLayerBlob(dir: string, blobPath: string, layer: LazyLayer, opts: { base: boolean; warn?(message: string): void }): Promise<void> {
  await applyLayerStream(dir, createReadStream(blobPath), layer.diffId, { base: opts.base, what: layer.what, warn: opts.warn });
}

async function applyLayerStream(dir: string, blob: AsyncIterable<Uint8Array>, diffId: Digest, opts: { base: boolean; what: string; warn?(message: string): void }): Promise<void> {
  const plain = digesting(decompress(blob, opts.what));
  try {
    await unpackLayer(dir, plain.chunks, opts);
  } catch (err) {
    // zlib's errors ("incorrect data check") say nothing of the layer.
    if (err instanceof BktError || !(err as NodeJS.ErrnoException).code?.startsWith('Z_')) throw err;
    throw new BktError('INVALID_ARGUMENT', `${opts.what}: cannot decompress: ${(err as Error).message}`, {}, { cause: err });
  }
  const got = plain.digest();
  if (got !== diffId) throw new BktError('INVALID_ARGUMENT', `${opts.what}: uncompressed content has digest ${got}, but its diff id is ${diffId}`);
}

/** Bytes a download may hold for its layer's unpacking before the unpacking (still waiting for earlier layers) reads them from the content store instead. */
const WAITING_BUFFER_BYTES = 16 * 1024 * 1024;
/** Bytes a download runs ahead of its layer's unpacking before it waits for it. */
const AHEAD_BYTES = 8 * 1024 * 1024;

/**
 * The bytes of one layer's download as its unpacking reads them: the same
 * pass as the content store's write. Until the unpacking starts (earlier
 * layers first) the bytes are buffered, up to `WAITING_BUFFER_BYTES`; past
 * that the unpacking reads the stored blob once it is complete. While the
 * unpacking reads, the download runs at most `AHEAD_BYTES` ahead.
 */
class LayerFeed {
  #queue: Uint8Array[] = [];
  #queued = 0;
  /** 'waiting': buffering for a reader to come; 'reading': a reader takes the bytes; 'dropped': the reader uses the stored blob. */
  #mode: 'waiting' | 'reading' | 'dropped' = 'waiting';
  #tapped = false;
  #tapStarted!: () => void;
  readonly #tapStart = new Promise<void>((r) => (this.#tapStarted = r));
  #ended = false;
  #error: unknown;
  #wake: (() => void) | undefined;
  #drained: (() => void) | undefined;

  /** `bytes` passed on unchanged (to the content store), each chunk also offered to the reader. */
  tap(bytes: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    this.#tapped = true;
    this.#tapStarted();
    return this.#pass(bytes);
  }

  async *#pass(bytes: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    try {
      for await (const chunk of bytes) {
        if (this.#mode !== 'dropped') {
          this.#queue.push(chunk);
          this.#queued += chunk.length;
          this.#signal();
          if (this.#mode === 'waiting' && this.#queued > WAITING_BUFFER_BYTES) this.drop();
          while (this.#mode === 'reading' && this.#queued > AHEAD_BYTES) await new Promise<void>((r) => (this.#drained = r));
        }
        yield chunk;
      }
    } catch (err) {
      this.#error = err;
      throw err;
    } finally {
      this.#ended = true;
      this.#signal();
    }
  }

  /**
   * The download's bytes for the unpacking, once it has started; undefined
   * when the unpacking reads the stored blob (`download` ended without
   * passing here: the blob was there, or it failed; too many bytes waited).
   */
  async read(download: Promise<void>): Promise<AsyncIterable<Uint8Array> | undefined> {
    if (!this.#tapped && this.#mode !== 'dropped') await Promise.race([this.#tapStart, download.catch(() => undefined)]);
    if (!this.#tapped || this.#mode === 'dropped') {
      this.drop();
      return undefined;
    }
    this.#mode = 'reading';
    const self = this;
    return {
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            const chunk = self.#queue.shift();
            if (chunk) {
              self.#queued -= chunk.length;
              if (self.#queued <= AHEAD_BYTES / 2) self.#release();
              yield chunk;
              continue;
            }
            if (self.#error !== undefined) throw self.#error;
            if (self.#ended) return;
            await new Promise<void>((r) => (self.#wake = r));
          }
        } finally {
          self.drop(); // a reader that stops early (a failed unpack) no longer holds the download back
        }
      },
    };
  }

  /** Stops offering bytes: the download goes on into the content store alone. */
  drop(): void {
    this.#mode = 'dropped';
    this.#queue = [];
    this.#queued = 0;
    this.#release();
  }

  #signal(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  #release(): void {
    const d = this.#drained;
    this.#drained = undefined;
    d?.();
  }
}

/**
 * The snapshot of a layer stack: layers already in the store (found by chain
 * id) are reused and their blobs never fetched; the others are fetched in
 * parallel and, in order, each made one snapshot over the one before,
 * recorded (layer and chain records; the snapshot keeps its blob).
 *
 * Unpacked (the default), a layer is verified and unpacked in one pass:
 * the bytes the content store writes (and verifies) are decompressed,
 * hashed against the diff id and extracted as they come; a later layer's
 * download runs ahead into the content store while earlier ones unpack. A
 * digest mismatch found at the end of a download discards the layer's
 * snapshot. Lazy (`opts.lazy`), only the blobs are fetched: the snapshots'
 * trees are made on first use. An empty stack is an empty tree.
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
  const lazy = opts.lazy === true && typeof ctx.snapshotter.lazy === 'function';
  // Downloads run ahead (the caller's client bounds them); snapshots follow in layer order.
  const feeds = layers.map(() => new LayerFeed());
  const downloads = layers.map(async (l, i) => {
    if (i < start || (await ctx.content.has(l.blob.digest))) return;
    await opts.fetch(l.blob, async (bytes) => {
      await ctx.content.write(lazy ? bytes : feeds[i].tap(bytes), l.blob.digest);
    });
  });
  for (const d of downloads) d.catch(() => undefined);
  let failed = false;
  try {
    // Lazy: every blob is in before any snapshot is made, so a failed fetch leaves no snapshot.
    if (lazy) await Promise.all(downloads);
    for (let i = start; i < layers.length; i++) {
      const { blob, diffId, createdAt } = layers[i];
      const what = `layer ${i + 1}/${layers.length} (${blob.digest}) of ${opts.what}`;
      let snapshot: Snapshot;
      if (lazy) {
        snapshot = await ctx.snapshotter.lazy!(parent, { blob: { mediaType: blob.mediaType, digest: blob.digest, size: blob.size }, diffId, what, ...(createdAt ? { createdAt } : {}) }, { description: `pulled ${what}`, recordType: opts.recordType });
      } else {
        opts.onLayer?.(blob, false);
        const mutable = await ctx.snapshotter.prepare(parent, { description: `pulled ${what}`, recordType: opts.recordType });
        try {
          const live = await feeds[i].read(downloads[i]);
          if (live) {
            try {
              await applyLayerStream(mutable.path, live, diffId, { base: parent === null, what, warn: opts.warn });
            } catch (err) {
              // Corrupt bytes show as a bad stream first; a download that failed (a digest mismatch) is the cause.
              feeds[i].drop();
              await downloads[i];
              throw err;
            }
          }
          // The download's end is its verification: a mismatch keeps nothing.
          await downloads[i];
          if (!live) await applyLayerStream(mutable.path, createReadStream(ctx.content.path(blob.digest)), diffId, { base: parent === null, what, warn: opts.warn });
        } catch (err) {
          feeds[i].drop();
          await mutable.discard();
          throw err;
        }
        snapshot = await mutable.commit();
      }
      // The snapshot keeps its layer blob: a prune removes the blob only with the snapshot.
      await ctx.content.addRef?.(blob.digest, { snapshot: snapshot.id });
      if (!lazy) opts.onLayer?.(blob, true);
      await writeLayerRecord(records, {
        snapshotId: snapshot.id,
        diffId,
        chainId: chains[i],
        blob: { mediaType: blob.mediaType, digest: blob.digest, size: blob.size },
        sources: opts.sources,
      }, opts.recordType);
      parent = snapshot;
    }
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    // Nothing waits on a layer the loop did not reach; after a failure the other downloads end (stored or
    // discarded) before it is reported, so no partial write outlives it.
    for (const f of feeds) f.drop();
    if (failed) await Promise.allSettled(downloads);
  }
  if (parent) return parent;
  const empty = await ctx.snapshotter.prepare(null, { description: `empty ${opts.what}` });
  return empty.commit();
}
