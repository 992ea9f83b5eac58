import { appendFile, link, mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import tar from 'tar-stream';
import type { Snapshot } from '@bkt/core';
import { openTestContext, type TestContext } from '@bkt/store/testing';
import { compress } from './compression.js';
import { digestOf } from './digest.js';
import { convertLayer, layerTar, snapshotLayer } from './layer.js';
import { unpackLayer } from './unpack.js';

async function entries(stream: AsyncIterable<Uint8Array>): Promise<{ name: string; type: string; linkname?: string; mtime: number }[]> {
  const extract = tar.extract();
  const out: { name: string; type: string; linkname?: string; mtime: number }[] = [];
  const feeding = (async () => {
    for await (const c of stream) extract.write(c);
    extract.end(undefined);
  })();
  for await (const e of extract) {
    out.push({ name: e.header.name, type: e.header.type ?? 'file', linkname: e.header.linkname ?? undefined, mtime: e.header.mtime!.getTime() / 1000 });
    e.resume();
  }
  await feeding;
  return out;
}

describe('layerTar', () => {
  let t: TestContext;
  let base: Snapshot;
  let top: Snapshot;
  beforeAll(async () => {
    t = await openTestContext();
    const b = await t.ctx.snapshotter.prepare(null);
    await mkdir(join(b.path, 'dir/sub'), { recursive: true });
    await writeFile(join(b.path, 'dir/old'), 'old');
    await writeFile(join(b.path, 'gone'), 'gone');
    base = await b.commit();
    const m = await t.ctx.snapshotter.prepare(base);
    await rm(join(m.path, 'dir'), { recursive: true });
    await mkdir(join(m.path, 'dir'));
    await writeFile(join(m.path, 'dir/new'), 'new');
    await rm(join(m.path, 'gone'));
    await writeFile(join(m.path, 'b'), 'same inode');
    await link(join(m.path, 'b'), join(m.path, 'a'));
    top = await m.commit();
  });
  afterAll(async () => t?.close());

  it('converts overlay whiteouts and opaque dirs to OCI entries, in byte order, with hard links', async () => {
    const list = await entries(layerTar(top.layerPath(), { clampMtime: 1000 }));
    // Whiteouts sit where the deleted name sorts (as BuildKit's differ walks the upper dir).
    expect(list.map((e) => e.name)).toEqual(['a', 'b', 'dir/', 'dir/.wh..wh..opq', 'dir/new', '.wh.gone']);
    expect(list.find((e) => e.name === 'b')).toMatchObject({ type: 'link', linkname: 'a' });
    expect(list.every((e) => e.mtime <= 1000)).toBe(true);
  });

  it('round-trips through the layer unpacker', async () => {
    const m = await t.ctx.snapshotter.prepare(base);
    await unpackLayer(m.path, layerTar(top.layerPath()), { base: false, what: 'round trip' });
    const again = await m.commit();
    const view = await again.mount();
    try {
      expect(await readFile(join(view.path, 'dir/new'), 'utf8')).toBe('new');
      await expect(stat(join(view.path, 'dir/old'))).rejects.toThrow(/ENOENT/);
      await expect(stat(join(view.path, 'dir/sub'))).rejects.toThrow(/ENOENT/);
      await expect(stat(join(view.path, 'gone'))).rejects.toThrow(/ENOENT/);
      expect((await stat(join(view.path, 'a'))).ino).toBe((await stat(join(view.path, 'b'))).ino);
    } finally {
      await view.release();
    }
  });

  it('makes a compressed layer from the remembered uncompressed one: the bytes of a direct one, made once', async () => {
    const writes: string[] = [];
    const content = t.ctx.content;
    const ctx = {
      root: t.ctx.root,
      content: {
        has: content.has.bind(content),
        path: content.path.bind(content),
        addRef: content.addRef?.bind(content),
        write: async (...a: Parameters<typeof content.write>) => {
          const r = await content.write(...a);
          writes.push(r.digest);
          return r;
        },
      },
    };
    const plain = await snapshotLayer(top, ctx, { compression: 'uncompressed' });
    expect(plain.descriptor.mediaType).toBe('application/vnd.oci.image.layer.v1.tar');
    expect(plain.descriptor.digest).toBe(plain.diffId);
    // The gzip layer of the tree, for reference.
    const gz: Buffer[] = [];
    for await (const c of compress(layerTar(top.layerPath()), 'gzip', undefined, 'reference')) gz.push(Buffer.from(c));
    const bytes = Buffer.concat(gz);
    const direct = { descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digestOf(bytes), size: bytes.length }, diffId: plain.diffId };
    writes.length = 0;
    const derived = await snapshotLayer(top, ctx, { compression: 'gzip' });
    expect(derived).toEqual(direct);
    expect(writes).toEqual([direct.descriptor.digest]);
    // Remembered: by the snapshot, and by the blob it came from.
    writes.length = 0;
    expect(await snapshotLayer(top, ctx, { compression: 'gzip' })).toEqual(direct);
    expect(await convertLayer(plain, ctx, { compression: 'gzip' })).toEqual(direct);
    expect(writes).toEqual([]);
    // A layer of the asked compression is itself.
    expect(await convertLayer(derived, ctx, { compression: 'gzip' })).toBe(derived);
    // The snapshot references the blobs it has, so a prune keeps them with it.
    const refs = (await content.refs!({ snapshot: top.id })).map((r) => r.digest);
    expect(refs).toEqual(expect.arrayContaining([plain.descriptor.digest, direct.descriptor.digest]));
  });
});

describe('layerTar file bodies', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bkt-layer-bodies-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  /** `n` bytes whose value depends on the file and the offset, so a body read at the wrong place or cut short shows. */
  const body = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed * 13 + (i >> 9)) & 0xff));

  it('holds every body whole where files straddle the 1 MiB chunks (sizes around the chunk and small-file bounds)', async () => {
    const tree = join(dir, 'straddle');
    await mkdir(tree);
    const MiB = 1024 * 1024;
    const sizes = [0, 1, 511, 512, 513, 300 * 1024, MiB - 1024, MiB - 512, MiB - 1, MiB, MiB + 1, 700 * 1024, 2 * MiB + 5, 100, MiB - 511];
    const want = new Map<string, Buffer>();
    for (const [i, size] of sizes.entries()) {
      const name = `f${String(i).padStart(2, '0')}`;
      want.set(name, body(size, i));
      await writeFile(join(tree, name), want.get(name)!);
    }
    const extract = tar.extract();
    const got = new Map<string, Buffer>();
    const feeding = (async () => {
      for await (const c of layerTar(tree)) extract.write(c);
      extract.end(undefined);
    })();
    for await (const e of extract) {
      const parts: Buffer[] = [];
      for await (const c of e) parts.push(c as Buffer);
      got.set(e.header.name, Buffer.concat(parts));
    }
    await feeding;
    expect([...got.keys()]).toEqual([...want.keys()]);
    for (const [name, bytes] of want) expect(got.get(name)!.equals(bytes), name).toBe(true);
  });

  /** Reads the layer of `tree` until its first chunk (the walk is done), runs `change`, then reads the rest. */
  async function readChangingAfterFirstChunk(tree: string, change: () => Promise<void>): Promise<void> {
    const it = layerTar(tree, { withOpaque: false })[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    await change();
    while (!(await it.next()).done);
  }

  it('fails naming the file when a small file grew or shrank after the walk', async () => {
    for (const [what, change, message] of [
      ['grew', (p: string) => appendFile(p, 'more'), /z changed while its layer was written \(10 bytes, then more\)/],
      ['shrank', (p: string) => truncate(p, 4), /z changed while its layer was written \(10 bytes, then 4 bytes\)/],
    ] as const) {
      const tree = join(dir, what);
      await mkdir(tree);
      // `a` fills the first chunk, so the first chunk comes out before `z` is read.
      await writeFile(join(tree, 'a'), body(1024 * 1024 - 512, 1));
      await writeFile(join(tree, 'z'), '0123456789');
      await expect(readChangingAfterFirstChunk(tree, () => change(join(tree, 'z')))).rejects.toThrow(message);
    }
  });

  it('comes out in chunks of exactly 1 MiB, each a buffer of its own, across large files (the compressor takes them without copying)', async () => {
    const tree = join(dir, 'aligned');
    await mkdir(tree);
    const MiB = 1024 * 1024;
    // Large files (over 1 MiB) at offsets that are not multiples of the chunk, between small ones.
    const sizes = [1000, 3 * MiB + 123, 70_000, MiB + 1, 2 * MiB, 5];
    for (const [i, size] of sizes.entries()) await writeFile(join(tree, `f${i}`), body(size, i));
    const chunks: Uint8Array[] = [];
    for await (const c of layerTar(tree, { withOpaque: false })) chunks.push(c);
    const all = Buffer.concat(chunks);
    expect(chunks.slice(0, -1).every((c) => c.length === MiB)).toBe(true);
    expect(chunks.at(-1)!.length).toBeLessThanOrEqual(MiB);
    expect(chunks.every((c) => c.byteOffset === 0 && c.buffer.byteLength === MiB)).toBe(true);
    expect(new Set(chunks.map((c) => c.buffer)).size).toBe(chunks.length);
    // The same tar as read in any other way: its entries whole.
    const extract = tar.extract();
    const got: Buffer[] = [];
    const feeding = (async () => {
      extract.end(all);
    })();
    for await (const e of extract) {
      const parts: Buffer[] = [];
      for await (const c of e) parts.push(c as Buffer);
      got.push(Buffer.concat(parts));
    }
    await feeding;
    expect(got.map((b, i) => b.equals(body(sizes[i]!, i)))).toEqual(sizes.map(() => true));
  });

  it('fails naming the file when a large file grew or shrank after the walk', async () => {
    const MiB = 1024 * 1024;
    for (const [what, change, message] of [
      ['large-grew', (p: string) => appendFile(p, 'more'), /z changed while its layer was written \(2097152 bytes, then more\)/],
      ['large-shrank', (p: string) => truncate(p, MiB + 10), /z changed while its layer was written \(2097152 bytes, then 1048586 bytes\)/],
    ] as const) {
      const tree = join(dir, what);
      await mkdir(tree);
      await writeFile(join(tree, 'a'), body(MiB - 512, 1));
      await writeFile(join(tree, 'z'), body(2 * MiB, 2));
      await expect(readChangingAfterFirstChunk(tree, () => change(join(tree, 'z')))).rejects.toThrow(message);
    }
  });

  it('closes a large file it stopped reading (the consumer left after the first chunk)', async () => {
    const tree = join(dir, 'left');
    await mkdir(tree);
    await writeFile(join(tree, 'big'), body(4 * 1024 * 1024, 3));
    const fds = async () => (await import('node:fs/promises')).readdir('/proc/self/fd').then((l) => l.length);
    const before = await fds();
    const it = layerTar(tree, { withOpaque: false })[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    await it.return?.(undefined);
    expect(await fds()).toBe(before);
  });
});

