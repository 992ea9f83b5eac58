import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { describeSnapshotterConformance } from '@bkt/core/testing';
import { isBktError, type Digest } from '@bkt/core';
import Database from 'better-sqlite3';
import { SCHEMA_VERSION } from './metadata.js';
import { Store } from './store.js';
import { mountsUnder } from './sys.js';
import { commitFiles } from './snapshots.test-util.js';

async function tempRoot(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'bkt-store-'));
}

for (const kind of ['overlay', 'copy'] as const) {
  describeSnapshotterConformance(kind, async () => {
    const root = await tempRoot();
    const store = await Store.open(root, kind);
    return {
      snapshotter: store.snapshotter,
      cleanup: async () => {
        await store.close();
        expect(await mountsUnder(root)).toEqual([]);
        await rm(root, { recursive: true, force: true });
      },
    };
  });
}

describe('content store', () => {
  it('writes blobs by digest, verifies expected digests, and reads them back', async () => {
    const root = await tempRoot();
    const store = await Store.open(root, 'copy');
    try {
      const data = new TextEncoder().encode('hello blob');
      const want = `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;
      const { digest, size } = await store.content.write(data, want);
      expect(digest).toBe(want);
      expect(size).toBe(data.length);
      expect(await store.content.has(digest)).toBe(true);
      expect(await readFile(store.content.path(digest), 'utf8')).toBe('hello blob');

      async function* chunks() {
        yield new TextEncoder().encode('hello ');
        yield new TextEncoder().encode('blob');
      }
      expect((await store.content.write(chunks())).digest).toBe(want);

      const bad = await store.content.write(data, `sha256:${'0'.repeat(64)}`).catch((e: unknown) => e);
      expect(isBktError(bad, 'INVALID_ARGUMENT')).toBe(true);
      expect(await readdir(join(root, 'content/ingest'))).toEqual([]);
      expect(isBktError((() => { try { store.content.path(`sha256:${'1'.repeat(64)}`); } catch (e) { return e; } })(), 'NOT_FOUND')).toBe(true);

      // Bytes already stored are not written again (the file keeps its inode); a wrong expected digest still fails.
      const before = await stat(store.content.path(want));
      expect(await store.content.write(data)).toEqual({ digest: want, size: data.length });
      expect((await stat(store.content.path(want))).ino).toBe(before.ino);
      expect(isBktError(await store.content.write(data, `sha256:${'2'.repeat(64)}`).catch((e: unknown) => e), 'INVALID_ARGUMENT')).toBe(true);
      // A stored file of another size (not a whole blob) is written over.
      expect(store.content.path(want)).toBe(join(root, 'content/blobs/sha256', want.slice(7)));
      const other = new TextEncoder().encode('other blob');
      const otherDigest = `sha256:${createHash('sha256').update(other).digest('hex')}` as Digest;
      await writeFile(join(root, 'content/blobs/sha256', otherDigest.slice(7)), 'oth');
      await store.content.write(other);
      expect(await readFile(store.content.path(otherDigest), 'utf8')).toBe('other blob');
    } finally {
      await store.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('store open', () => {
  it('repairs leftovers: ingest files, unrecorded snapshot dirs, records without dirs, stale mounts', async () => {
    const root = await tempRoot();
    let store = await Store.open(root, 'overlay');
    const base = await commitFiles(store.snapshotter, null, { f: 'f' });
    const child = await commitFiles(store.snapshotter, base, { g: 'g' });
    const lost = await commitFiles(store.snapshotter, null, {});
    store.db.putCache(['k-child'], { canonical: 'k-child', outputs: [child.id] });
    store.db.putCache(['k-lost'], { canonical: 'k-lost', outputs: [lost.id] });
    // A mutable left mounted, a partial blob, a stray dir, a record whose dir vanished.
    const pending = await store.snapshotter.prepare(child);
    await writeFile(join(pending.path, 'partial'), 'p');
    await writeFile(join(root, 'content/ingest/partial'), 'half a blob');
    await mkdir(join(root, 'snapshots/stray/fs'), { recursive: true });
    await rm(join(root, 'snapshots', lost.id), { recursive: true });
    // Simulate a crash: drop the store without close().
    store.db.close();
    await rm(join(root, 'lock'), { force: true });
    expect((await mountsUnder(root)).length).toBe(1);
    const { __resetOpenRoots } = await import('./store.js');
    __resetOpenRoots(root);

    store = await Store.open(root, 'auto');
    try {
      expect(store.snapshotter.kind).toBe('overlay');
      expect(await mountsUnder(root)).toEqual([]);
      expect(await readdir(join(root, 'content/ingest'))).toEqual([]);
      expect(existsSync(join(root, 'snapshots/stray'))).toBe(false);
      expect(existsSync(join(root, 'snapshots', pending.id))).toBe(false);
      expect(store.db.getSnapshot(lost.id)).toBeUndefined();
      expect(store.db.getCache('k-lost')).toBeUndefined();
      expect(store.db.getCache('k-child')?.outputs).toEqual([child.id]);
      const view = await (await store.snapshotter.get(child.id)).mount();
      expect((await readdir(view.path)).sort()).toEqual(['f', 'g']);
      await view.release();
    } finally {
      await store.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it('refuses a second open of the same root and a snapshotter other than the store was made with', async () => {
    const root = await tempRoot();
    const store = await Store.open(root, 'copy');
    try {
      expect(isBktError(await Store.open(root).catch((e: unknown) => e), 'INVALID_ARGUMENT')).toBe(true);
    } finally {
      await store.close();
    }
    const err = await Store.open(root, 'overlay').catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect(String((err as Error).message)).toContain('copy');
    await rm(root, { recursive: true, force: true });
  });

  it('records its schema version and refuses a database of a newer one', async () => {
    const root = await tempRoot();
    let store = await Store.open(root, 'copy');
    expect(store.db.getMeta('schema_version')).toBe(String(SCHEMA_VERSION));
    store.db.setMeta('schema_version', String(SCHEMA_VERSION + 1));
    await store.close();
    const err = await Store.open(root).catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toContain(`schema version ${SCHEMA_VERSION + 1}, newer than this bkt supports (${SCHEMA_VERSION})`);
    // The refusal leaves the root free: an older version opens again.
    const db = new Database(join(root, 'metadata.db'));
    db.prepare("UPDATE meta SET value = ? WHERE name = 'schema_version'").run(String(SCHEMA_VERSION));
    db.close();
    store = await Store.open(root);
    await store.close();
    await rm(root, { recursive: true, force: true });
  });

  it('close() unmounts views never released and mutable snapshots never committed', async () => {
    const root = await tempRoot();
    const store = await Store.open(root, 'overlay');
    const base = await commitFiles(store.snapshotter, null, { f: 'f' });
    const child = await commitFiles(store.snapshotter, base, { g: 'g' });
    await child.mount();
    await store.snapshotter.prepare(child);
    expect((await mountsUnder(root)).length).toBe(2);
    await store.close();
    expect(await mountsUnder(root)).toEqual([]);
    await rm(root, { recursive: true, force: true });
  });

  it('deferMount: the caller mounts the overlay it is given; nothing is mounted on the host for it, the commit records what was written', async () => {
    const root = await tempRoot();
    const store = await Store.open(root, 'overlay');
    const base = await commitFiles(store.snapshotter, null, { f: 'f' });
    const mutable = await store.snapshotter.prepare(base, { deferMount: true });
    expect(mutable.deferredMount).toMatchObject({ type: 'overlay', source: 'overlay' });
    expect(mutable.deferredMount!.options).toMatch(/^lowerdir=.*,upperdir=.*,workdir=.*$/);
    expect(await mountsUnder(root)).toEqual([]);
    expect(await readdir(mutable.path)).toEqual([]);
    // As a caller would: mounted (here on the host, for the test), written, unmounted.
    execFileSync('mount', ['-t', 'overlay', '-o', mutable.deferredMount!.options, 'overlay', mutable.path]);
    await writeFile(join(mutable.path, 'g'), 'g');
    expect(await readFile(join(mutable.path, 'f'), 'utf8')).toBe('f');
    execFileSync('umount', [mutable.path]);
    // What an interrupted copy-up leaves in the kernel's scratch dir: removed with it.
    await writeFile(join(root, 'snapshots', mutable.id, 'work', 'work', '#7'), '');
    const child = await mutable.commit();
    expect(existsSync(mutable.path)).toBe(false);
    // The overlay's work dir (with the `work` dir, mode 0, the kernel made in it) is gone; the layer stays.
    expect(await readdir(join(root, 'snapshots', child.id))).toEqual(['fs']);
    const view = await child.mount();
    expect((await readdir(view.path)).sort()).toEqual(['f', 'g']);
    await view.release();
    // Without a parent there is nothing to mount: a plain directory, as without the option.
    const plain = await store.snapshotter.prepare(null, { deferMount: true });
    expect(plain.deferredMount).toBeUndefined();
    await plain.discard();
    await store.close();
    await rm(root, { recursive: true, force: true });
  });

  it('deferMount: a mount the caller left at commit or discard is unmounted; a discard leaves nothing of the snapshot', async () => {
    const root = await tempRoot();
    const store = await Store.open(root, 'overlay');
    try {
      const base = await commitFiles(store.snapshotter, null, { f: 'f' });
      const left = await store.snapshotter.prepare(base, { deferMount: true });
      execFileSync('mount', ['-t', 'overlay', '-o', left.deferredMount!.options, 'overlay', left.path]);
      await writeFile(join(left.path, 'g'), 'g');
      const child = await left.commit();
      expect(await mountsUnder(root)).toEqual([]);
      expect(existsSync(left.path)).toBe(false);
      const view = await child.mount();
      expect((await readdir(view.path)).sort()).toEqual(['f', 'g']);
      await view.release();

      for (const unmountFirst of [true, false]) {
        const dropped = await store.snapshotter.prepare(child, { deferMount: true });
        execFileSync('mount', ['-t', 'overlay', '-o', dropped.deferredMount!.options, 'overlay', dropped.path]);
        await writeFile(join(dropped.path, 'h'), 'h');
        if (unmountFirst) execFileSync('umount', [dropped.path]);
        await dropped.discard();
        expect(await mountsUnder(root)).toEqual([]);
        expect(existsSync(dropped.path)).toBe(false);
        expect(existsSync(join(root, 'snapshots', dropped.id))).toBe(false);
      }
      expect((await readdir(join(root, 'snapshots'))).sort()).toEqual([base.id, child.id].sort());
    } finally {
      await store.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it('flattens an overlay chain too long for one mount', async () => {
    const root = await tempRoot();
    const store = await Store.open(root, 'overlay');
    try {
      let parent = null;
      for (let i = 0; i < 130; i++) {
        const m = await store.snapshotter.prepare(parent);
        await writeFile(join(m.path, `f${i}`), String(i));
        parent = await m.commit();
      }
      const view = await parent!.mount();
      expect((await readdir(view.path)).length).toBe(130);
      expect(await readFile(join(view.path, 'f0'), 'utf8')).toBe('0');
      await view.release();
      expect(store.snapshotter.chain(parent!.id).length).toBeLessThan(130);
      expect((await stat(join(root, 'snapshots'))).isDirectory()).toBe(true);
    } finally {
      await store.close();
      await rm(root, { recursive: true, force: true });
    }
  }, 120_000);
});
