import { execFileSync } from 'node:child_process';
import { link, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Store, treeBytes, treeUsage } from './store.js';
import { commitFiles } from './snapshots.test-util.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bkt-tree-usage-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const duSb = (path: string) => Number(execFileSync('du', ['-sb', path], { encoding: 'utf8' }).split('\t')[0]);

describe('treeUsage', () => {
  it("counts a file linked from other trees for its links' share, so the trees add up to du -sb of all", async () => {
    for (const t of ['a', 'b', 'c']) await mkdir(join(dir, t, 'sub'), { recursive: true });
    await writeFile(join(dir, 'a/big'), Buffer.alloc(300_001, 1));
    await link(join(dir, 'a/big'), join(dir, 'b/sub/big'));
    await link(join(dir, 'a/big'), join(dir, 'b/big-again'));
    await writeFile(join(dir, 'c/own'), 'own');
    await link(join(dir, 'c/own'), join(dir, 'c/sub/own-again'));

    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((t) => treeUsage(join(dir, t))));
    expect(a!.shared).toBe(true);
    expect(b!.shared).toBe(true);
    // Links inside one tree only: counted once, not shared.
    expect(c).toEqual({ bytes: duSb(join(dir, 'c')) - 4096, shared: false, own: duSb(join(dir, 'c')) - 4096 });
    expect(Math.abs(a!.bytes - (4096 + 100_000))).toBeLessThanOrEqual(1);
    expect(Math.abs(a!.bytes + b!.bytes + c!.bytes - (duSb(dir) - 4096 * 4))).toBeLessThanOrEqual(2);
    expect(await treeBytes(join(dir, 'b'))).toBe(b!.bytes);
  });

  it('is 0 for a missing tree and counts a file once the others links are gone', async () => {
    expect(await treeUsage(join(dir, 'none'))).toEqual({ bytes: 0, shared: false, own: 0 });
    await mkdir(join(dir, 'a'));
    await mkdir(join(dir, 'b'));
    await writeFile(join(dir, 'a/f'), Buffer.alloc(1000));
    await link(join(dir, 'a/f'), join(dir, 'b/f'));
    expect(await treeUsage(join(dir, 'a'))).toEqual({ bytes: 500, shared: true, own: 0 });
    await rm(join(dir, 'b'), { recursive: true });
    expect(await treeUsage(join(dir, 'a'))).toEqual({ bytes: 1000, shared: false, own: 1000 });
  });

  it("keeps du's total the bytes of the store when a measured snapshot's files are linked into a later one (told by linkedFrom)", async () => {
    const root = join(dir, 'root');
    const store = await Store.open(root, 'copy');
    try {
      const first = await commitFiles(store.snapshotter, null, { 'big.bin': 'x'.repeat(200_000) });
      const before = (await store.diskUsage()).find((r) => r.id === first.id)!;
      expect(before.shared).toBe(false);
      // A later snapshot links the measured one's file (as a copy from a context does).
      const m = await store.snapshotter.prepare(null);
      await link(join(first.layerPath(), 'big.bin'), join(m.path, 'big.bin'));
      const second = await m.commit();
      // The linker says so through a build's snapshotter (the solver's copy does): the size measured before is forgotten.
      const scoped = store.snapshotter.scoped();
      scoped.snapshotter.linkedFrom!([first.id]);
      scoped.release();
      const usage = await store.diskUsage();
      const [u1, u2] = [first, second].map((s) => usage.find((r) => r.id === s.id)!);
      expect(u1).toMatchObject({ size: before.size - 100_000, shared: true });
      expect(u2!.shared).toBe(true);
      expect(u2!.size - 100_000).toBeLessThan(10_000);
      // Removing one frees none of the file: a keepStorage prune does not stop early on its share.
      const removed = await store.prune({ all: true, keepStorage: 150_000 });
      expect(removed.filter((r) => r.recordType !== 'content').length).toBe(2);
    } finally {
      await store.close();
    }
  });

  it('forgets a measured size when a merge links the snapshot\'s files (overlay) or a lazy snapshot gets its tree', async () => {
    const root = join(dir, 'root2');
    const store = await Store.open(root, 'overlay');
    try {
      const sizeOf = async (id: string) => (await store.diskUsage()).find((r) => r.id === id)!;
      const base = await commitFiles(store.snapshotter, null, { base: 'b' });
      const a = await commitFiles(store.snapshotter, null, { a: 'a'.repeat(300_000) });
      const before = await sizeOf(a.id);
      expect(before.shared).toBe(false);
      await store.snapshotter.merge([base, a]);
      const after = await sizeOf(a.id);
      expect(after.shared).toBe(true);
      expect(after.size).toBe(before.size - 150_000);

      store.snapshotter.setLayerApplier(async (d) => writeFile(join(d, 'big'), Buffer.alloc(400_000, 1)));
      const lazy = await store.snapshotter.lazy(null, { blob: { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${'a'.repeat(64)}`, size: 1 }, diffId: `sha256:${'b'.repeat(64)}`, what: 'test layer' });
      expect((await sizeOf(lazy.id)).size).toBeLessThan(100_000);
      await lazy.materialize!();
      expect((await sizeOf(lazy.id)).size).toBeGreaterThanOrEqual(400_000);
    } finally {
      await store.close();
    }
  });

  it('keeps a snapshot an import dated in the past through a keepDuration prune (it is used now)', async () => {
    const root = join(dir, 'root3');
    const store = await Store.open(root, 'copy');
    try {
      const old = new Date(Date.now() - 3 * 86_400_000);
      const lazy = await store.snapshotter.lazy(null, { blob: { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${'c'.repeat(64)}`, size: 1 }, diffId: `sha256:${'d'.repeat(64)}`, what: 'cache layer', createdAt: old });
      expect(lazy.createdAt?.getTime()).toBe(old.getTime());
      const removed = await store.prune({ all: true, keepDuration: 86_400_000 });
      expect(removed.map((r) => r.id)).not.toContain(lazy.id);
    } finally {
      await store.close();
    }
  });
});
