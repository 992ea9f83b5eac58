/**
 * `unpackLayers` against a real store: a layer verified and unpacked in the
 * same pass as its download, lazy layers (blobs only, the tree made on first
 * use), and digest mismatches leaving nothing behind.
 */
import { createReadStream, existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import tar from 'tar-stream';
import type { Digest } from '@bkt/core';
import { openTestContext, type TestContext } from '@bkt/store/testing';
import { applyLayerBlob, readLayerRecord, unpackLayers, type LayerToUnpack } from './image-store.js';
import { digestOf } from './digest.js';
import { snapshotLayer } from './layer.js';

async function tarOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c) => chunks.push(c as Buffer));
  const ended = new Promise<void>((r) => pack.on('end', () => r()));
  for (const [name, body] of Object.entries(files)) {
    await new Promise<void>((res, rej) => pack.entry({ name, mtime: new Date(0), mode: 0o644 }, body, (e) => (e ? rej(e) : res())));
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** A gzip layer of `files`: its blob bytes and what an image says of it. */
async function gzipLayer(files: Record<string, string | Buffer>): Promise<{ bytes: Buffer; layer: LayerToUnpack }> {
  const plain = await tarOf(files);
  const bytes = gzipSync(plain);
  return { bytes, layer: { blob: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digestOf(bytes), size: bytes.length }, diffId: digestOf(plain) } };
}

async function* chunked(b: Buffer, size = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

const snapshotRows = () => t.store.db.listSnapshots().map((r) => r.id);

let t: TestContext;

describe.each(['copy', 'overlay'] as const)('unpackLayers (%s snapshotter)', (snapshotter) => {
  beforeEach(async () => {
    t = await openTestContext({ snapshotter });
    t.store.snapshotter.setLayerApplier((dir, layer, o) => applyLayerBlob(dir, t.store.content.path(layer.blob.digest), layer, o));
  });
  afterEach(async () => {
    await t.close();
  });

  it('unpacks a layer while it downloads: its first file is on disk before the download ends', async () => {
    const big = Buffer.alloc(4 << 20, 'x');
    const plain = await tarOf({ 'first.txt': 'first\n', 'big.bin': big });
    const layer: LayerToUnpack = { blob: { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digestOf(plain), size: plain.length }, diffId: digestOf(plain) };
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let firstSeenMidDownload = false;
    const unpacked = unpackLayers([layer], t.ctx, {
      what: 'test image',
      sources: [],
      fetch: (_blob, store) =>
        store(
          (async function* () {
            yield plain.subarray(0, 4096); // the header and body of first.txt
            await gate;
            yield plain.subarray(4096);
          })(),
        ),
    });
    const snapshotsDir = join(t.store.root, 'snapshots');
    for (let i = 0; i < 100 && !firstSeenMidDownload; i++) {
      for (const id of await readdir(snapshotsDir)) if (existsSync(join(snapshotsDir, id, 'fs', 'first.txt'))) firstSeenMidDownload = true;
      if (!firstSeenMidDownload) await new Promise((r) => setTimeout(r, 20));
    }
    expect(await t.ctx.content.has(layer.blob.digest)).toBe(false);
    release();
    const snapshot = await unpacked;
    expect(firstSeenMidDownload).toBe(true);
    const m = await snapshot.mount();
    try {
      expect(await readFile(join(m.path, 'first.txt'), 'utf8')).toBe('first\n');
      expect((await readFile(join(m.path, 'big.bin'))).equals(big)).toBe(true);
    } finally {
      await m.release();
    }
    expect(await t.ctx.content.has(layer.blob.digest)).toBe(true);
  });

  it('fetches layers in parallel and applies them in order, streaming or from the stored blob', async () => {
    const a = await gzipLayer({ 'a.txt': 'a\n', 'shared.txt': 'from a\n' });
    const b = await gzipLayer({ 'b.txt': 'b\n', 'shared.txt': 'from b\n' });
    const fetched: string[] = [];
    const snapshot = await unpackLayers([a.layer, b.layer], t.ctx, {
      what: 'test image',
      sources: [],
      fetch: (blob, store) => {
        fetched.push(blob.digest);
        return store(chunked(blob.digest === a.layer.blob.digest ? a.bytes : b.bytes, 7));
      },
    });
    expect(fetched.sort()).toEqual([a.layer.blob.digest, b.layer.blob.digest].sort());
    const m = await snapshot.mount();
    try {
      expect(await readFile(join(m.path, 'shared.txt'), 'utf8')).toBe('from b\n');
      expect(await readFile(join(m.path, 'a.txt'), 'utf8')).toBe('a\n');
    } finally {
      await m.release();
    }
    expect((await readLayerRecord(t.ctx.records!, snapshot.id))?.blob.digest).toBe(b.layer.blob.digest);
  });

  it('a download whose digest mismatches at its end fails and leaves no snapshot and no blob', async () => {
    const a = await gzipLayer({ 'a.txt': 'a\n' });
    const claimed = { ...a.layer, blob: { ...a.layer.blob, digest: `sha256:${'e'.repeat(64)}` as Digest } };
    const before = snapshotRows();
    await expect(unpackLayers([claimed], t.ctx, { what: 'test image', sources: [], fetch: (_b, store) => store(chunked(a.bytes)) })).rejects.toThrow(/digest mismatch/);
    expect(snapshotRows()).toEqual(before);
    expect(await t.ctx.content.has(claimed.blob.digest)).toBe(false);
    expect(await readdir(join(t.store.root, 'content', 'ingest'))).toEqual([]);
  });

  it('a corrupt download fails with its digest mismatch (not the decompressor\'s complaint) and leaves nothing', async () => {
    const a = await gzipLayer({ 'a.bin': Buffer.alloc(1 << 20, 'a'), 'b.bin': Buffer.alloc(1 << 20, 'b') });
    const corrupt = Buffer.from(a.bytes);
    corrupt[corrupt.length >> 1] ^= 0xff;
    const before = snapshotRows();
    await expect(unpackLayers([a.layer], t.ctx, { what: 'test image', sources: [], fetch: (_b, store) => store(chunked(corrupt, 4096)) })).rejects.toThrow(
      `content digest mismatch: expected ${a.layer.blob.digest}`,
    );
    expect(snapshotRows()).toEqual(before);
    expect(await t.ctx.content.has(a.layer.blob.digest)).toBe(false);
  });

  it('lazy: only the blobs are fetched; the tree is made on first use, and a prune takes blobs and records with the snapshots', async () => {
    const a = await gzipLayer({ 'a.txt': 'a\n' });
    const b = await gzipLayer({ 'b.txt': 'b\n' });
    const bytes = new Map([[a.layer.blob.digest, a.bytes], [b.layer.blob.digest, b.bytes]]);
    const top = await unpackLayers([a.layer, b.layer], t.ctx, { what: 'test cache', sources: [], lazy: true, fetch: (blob, store) => store(chunked(bytes.get(blob.digest)!)) });
    expect(t.store.snapshotter.isLazy(top.id)).toBe(true);
    expect(t.store.snapshotter.isLazy(top.parent!)).toBe(true);
    expect(await readdir(t.store.snapshotter.fsDir(top.id))).toEqual([]);
    expect(await t.ctx.content.has(a.layer.blob.digest)).toBe(true);
    // The image exporters find the blob of each layer.
    expect((await readLayerRecord(t.ctx.records!, top.id))?.blob.digest).toBe(b.layer.blob.digest);

    const m = await top.mount();
    try {
      expect(await readFile(join(m.path, 'a.txt'), 'utf8')).toBe('a\n');
      expect(await readFile(join(m.path, 'b.txt'), 'utf8')).toBe('b\n');
    } finally {
      await m.release();
    }
    expect(t.store.snapshotter.isLazy(top.id)).toBe(false);
    expect(t.store.snapshotter.isLazy(top.parent!)).toBe(false);

    await t.store.prune({ all: true });
    expect(snapshotRows()).toEqual([]);
    expect(await t.ctx.content.has(a.layer.blob.digest)).toBe(false);
    expect(await t.ctx.content.has(b.layer.blob.digest)).toBe(false);
    expect(await readLayerRecord(t.ctx.records!, top.id)).toBeUndefined();
  });

  it('lazy: a prune before first use takes the snapshots and their blobs', async () => {
    const a = await gzipLayer({ 'a.txt': 'a\n' });
    await unpackLayers([a.layer], t.ctx, { what: 'test cache', sources: [], lazy: true, fetch: (_blob, store) => store(chunked(a.bytes)) });
    await t.store.prune({ all: true });
    expect(snapshotRows()).toEqual([]);
    expect(await t.ctx.content.has(a.layer.blob.digest)).toBe(false);
  });

  it('lazy: a blob whose digest mismatches fails the fetch and leaves no snapshot and no blob', async () => {
    const a = await gzipLayer({ 'a.txt': 'a\n' });
    const b = await gzipLayer({ 'b.txt': 'b\n' });
    const corrupt = Buffer.from(b.bytes);
    corrupt[corrupt.length >> 1] ^= 0xff;
    // The good layer is still downloading when the corrupt one fails.
    const slowly = async function* (buf: Buffer) {
      yield buf.subarray(0, 10);
      await new Promise((r) => setTimeout(r, 200));
      yield buf.subarray(10);
    };
    await expect(
      unpackLayers([a.layer, b.layer], t.ctx, {
        what: 'test cache',
        sources: [],
        lazy: true,
        fetch: (blob, store) => store(blob.digest === a.layer.blob.digest ? slowly(a.bytes) : chunked(corrupt)),
      }),
    ).rejects.toThrow(/digest mismatch/);
    expect(snapshotRows()).toEqual([]);
    expect(await t.ctx.content.has(b.layer.blob.digest)).toBe(false);
    expect(await readdir(join(t.store.root, 'content', 'ingest'))).toEqual([]);
  });

  it('lazy: a layer whose diff id mismatches fails on first use, naming it; the snapshot stays lazy and nothing half-made is left', async () => {
    const a = await gzipLayer({ 'a.txt': 'a\n' });
    const lying = { ...a.layer, diffId: `sha256:${'d'.repeat(64)}` as Digest };
    const top = await unpackLayers([lying], t.ctx, { what: 'test cache', sources: [], lazy: true, fetch: (_blob, store) => store(chunked(a.bytes)) });
    const rows = snapshotRows();
    await expect(top.mount()).rejects.toThrow(/layer 1\/1 .* of test cache: uncompressed content has digest .* but its diff id is sha256:d{64}/);
    expect(snapshotRows()).toEqual(rows);
    expect(t.store.snapshotter.isLazy(top.id)).toBe(true);
    expect(await readdir(t.store.snapshotter.fsDir(top.id))).toEqual([]);
    expect((await readdir(join(t.store.root, 'snapshots'))).sort()).toEqual(rows.sort());
  });

  it('lazy: a new layer of a lazy snapshot (snapshotLayer) is made from its tree, made first', async () => {
    const a = await gzipLayer({ 'a.txt': 'a\n' });
    const top = await unpackLayers([a.layer], t.ctx, { what: 'test cache', sources: [], lazy: true, fetch: (_blob, store) => store(chunked(a.bytes)) });
    const layer = await snapshotLayer(top, t.ctx, { compression: 'uncompressed', noCache: true });
    expect(t.store.snapshotter.isLazy(top.id)).toBe(false);
    const names: string[] = [];
    const extract = tar.extract();
    extract.on('entry', (h, stream, next) => {
      names.push(h.name);
      stream.resume();
      stream.on('end', next);
    });
    await pipeline(createReadStream(t.ctx.content.path(layer.descriptor.digest)), extract);
    expect(names).toContain('a.txt');
  });

  it('lazy: a prepare over a lazy snapshot makes its tree first', async () => {
    const a = await gzipLayer({ 'a.txt': 'a\n' });
    const top = await unpackLayers([a.layer], t.ctx, { what: 'test cache', sources: [], lazy: true, fetch: (_blob, store) => store(chunked(a.bytes)) });
    const m = await t.ctx.snapshotter.prepare(top);
    try {
      expect(await readFile(join(m.path, 'a.txt'), 'utf8')).toBe('a\n');
    } finally {
      await m.discard();
    }
  });
});
