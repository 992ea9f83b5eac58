import { link, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
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
