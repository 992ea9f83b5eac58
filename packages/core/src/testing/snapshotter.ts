import { lstat, mkdir, readdir, readFile, readlink, rm, stat, symlink, writeFile, chmod, chown } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBktError } from '../errors.js';
import type { Mounted, Snapshot, Snapshotter } from '../types.js';

/** What a snapshotter conformance run needs: a fresh, empty snapshotter and a way to dispose of it. */
export interface SnapshotterFixture {
  snapshotter: Snapshotter;
  /** Removes everything the fixture created (store directory, mounts). */
  cleanup(): Promise<void>;
}

/**
 * The behaviour every `Snapshotter` must have, as vitest tests. Each test gets
 * a fresh fixture from `factory`:
 *
 * ```ts
 * describeSnapshotterConformance('overlay', async () => {
 *   const root = await mkdtemp(...);
 *   return { snapshotter: new OverlaySnapshotter(root), cleanup: () => rm(root, { recursive: true }) };
 * });
 * ```
 */
export function describeSnapshotterConformance(name: string, factory: () => Promise<SnapshotterFixture>): void {
  describe(`Snapshotter conformance: ${name}`, () => {
    let fixture: SnapshotterFixture;
    let sn: Snapshotter;
    const mounts: Mounted[] = [];

    beforeEach(async () => {
      fixture = await factory();
      sn = fixture.snapshotter;
    });
    afterEach(async () => {
      for (const m of mounts.splice(0)) await m.release();
      await fixture.cleanup();
    });

    /** Mounts a snapshot (released after the test) and returns its path. */
    async function view(s: Snapshot): Promise<string> {
      const m = await s.mount();
      mounts.push(m);
      return m.path;
    }

    /** A committed snapshot over `parent`, made by `write(dir)`. */
    async function make(parent: Snapshot | null, write: (dir: string) => Promise<void>): Promise<Snapshot> {
      const mut = await sn.prepare(parent);
      await write(mut.path);
      return mut.commit();
    }

    it('prepare(null) gives an empty writable tree; commit records it; mount shows it', async () => {
      const mut = await sn.prepare(null, { description: 'conformance base' });
      expect(await readdir(mut.path)).toEqual([]);
      await mkdir(path.join(mut.path, 'etc'));
      await writeFile(path.join(mut.path, 'etc/hostname'), 'box\n');
      const snap = await mut.commit();
      expect(snap.parent).toBeNull();
      const dir = await view(snap);
      expect(await readFile(path.join(dir, 'etc/hostname'), 'utf8')).toBe('box\n');
    });

    it('get(id) returns the committed snapshot; an unknown id is NOT_FOUND', async () => {
      const snap = await make(null, (d) => writeFile(path.join(d, 'f'), 'x'));
      const again = await sn.get(snap.id);
      expect(again.id).toBe(snap.id);
      expect(await readFile(path.join(await view(again), 'f'), 'utf8')).toBe('x');
      const err = await sn.get('no-such-snapshot').catch((e: unknown) => e);
      expect(isBktError(err, 'NOT_FOUND')).toBe(true);
    });

    it('preserves modes, owners, symlinks and empty directories', async () => {
      const snap = await make(null, async (d) => {
        await writeFile(path.join(d, 'script'), '#!/bin/sh\n');
        await chmod(path.join(d, 'script'), 0o4755);
        await writeFile(path.join(d, 'owned'), 'o');
        await chown(path.join(d, 'owned'), 1234, 5678);
        await symlink('../target/nowhere', path.join(d, 'link'));
        await mkdir(path.join(d, 'empty'), { mode: 0o700 });
        await chmod(path.join(d, 'empty'), 0o700);
      });
      const dir = await view(snap);
      expect((await stat(path.join(dir, 'script'))).mode & 0o7777).toBe(0o4755);
      const owned = await stat(path.join(dir, 'owned'));
      expect([owned.uid, owned.gid]).toEqual([1234, 5678]);
      expect((await lstat(path.join(dir, 'link'))).isSymbolicLink()).toBe(true);
      expect(await readlink(path.join(dir, 'link'))).toBe('../target/nowhere');
      const empty = await stat(path.join(dir, 'empty'));
      expect(empty.isDirectory()).toBe(true);
      expect(empty.mode & 0o777).toBe(0o700);
    });

    it('a child sees its parent; its writes do not show in the parent', async () => {
      const parent = await make(null, (d) => writeFile(path.join(d, 'base'), 'parent'));
      const mut = await sn.prepare(parent);
      expect(await readFile(path.join(mut.path, 'base'), 'utf8')).toBe('parent');
      await writeFile(path.join(mut.path, 'base'), 'child');
      await writeFile(path.join(mut.path, 'new'), 'n');
      const child = await mut.commit();
      expect(child.parent).toBe(parent.id);

      const p = await view(parent);
      expect(await readFile(path.join(p, 'base'), 'utf8')).toBe('parent');
      expect(await readdir(p)).toEqual(['base']);
      const c = await view(child);
      expect(await readFile(path.join(c, 'base'), 'utf8')).toBe('child');
      expect((await readdir(c)).sort()).toEqual(['base', 'new']);
    });

    it('deletions in a child hide parent files, which stay in the parent', async () => {
      const parent = await make(null, async (d) => {
        await writeFile(path.join(d, 'gone'), 'g');
        await mkdir(path.join(d, 'dir/sub'), { recursive: true });
        await writeFile(path.join(d, 'dir/sub/deep'), 'd');
        await writeFile(path.join(d, 'kept'), 'k');
      });
      const child = await make(parent, async (d) => {
        await rm(path.join(d, 'gone'));
        await rm(path.join(d, 'dir'), { recursive: true });
      });
      const c = await view(child);
      expect(await readdir(c)).toEqual(['kept']);
      const p = await view(parent);
      expect((await readdir(p)).sort()).toEqual(['dir', 'gone', 'kept']);
      expect(await readFile(path.join(p, 'dir/sub/deep'), 'utf8')).toBe('d');
    });

    it('a directory deleted and re-created in a child shows only the new contents', async () => {
      const parent = await make(null, async (d) => {
        await mkdir(path.join(d, 'app'));
        await writeFile(path.join(d, 'app/old'), 'old');
      });
      const child = await make(parent, async (d) => {
        await rm(path.join(d, 'app'), { recursive: true });
        await mkdir(path.join(d, 'app'));
        await writeFile(path.join(d, 'app/new'), 'new');
      });
      expect(await readdir(path.join(await view(child), 'app'))).toEqual(['new']);
    });

    it('layerPath() holds only the snapshot\'s own changes, deletions as whiteouts', async () => {
      const parent = await make(null, async (d) => {
        await writeFile(path.join(d, 'same'), 's');
        await writeFile(path.join(d, 'changed'), 'before');
        await writeFile(path.join(d, 'deleted'), 'x');
      });
      const child = await make(parent, async (d) => {
        await writeFile(path.join(d, 'changed'), 'after');
        await writeFile(path.join(d, 'added'), 'a');
        await rm(path.join(d, 'deleted'));
      });
      const layer = child.layerPath();
      expect((await readdir(layer)).sort()).toEqual(['added', 'changed', 'deleted']);
      expect(await readFile(path.join(layer, 'changed'), 'utf8')).toBe('after');
      const wh = await lstat(path.join(layer, 'deleted'));
      expect(wh.isCharacterDevice()).toBe(true);
      expect(wh.rdev).toBe(0);
      expect((await readdir(parent.layerPath())).sort()).toEqual(['changed', 'deleted', 'same']);
    });

    it('merge stacks snapshots in order: later ones win, files of all show', async () => {
      const a = await make(null, async (d) => {
        await writeFile(path.join(d, 'shared'), 'from a');
        await writeFile(path.join(d, 'only-a'), 'a');
        await mkdir(path.join(d, 'dir'));
        await writeFile(path.join(d, 'dir/a'), 'a');
      });
      const b = await make(null, async (d) => {
        await writeFile(path.join(d, 'shared'), 'from b');
        await writeFile(path.join(d, 'only-b'), 'b');
        await mkdir(path.join(d, 'dir'));
        await writeFile(path.join(d, 'dir/b'), 'b');
      });
      const ab = await view(await sn.merge([a, b]));
      expect(await readFile(path.join(ab, 'shared'), 'utf8')).toBe('from b');
      expect((await readdir(ab)).sort()).toEqual(['dir', 'only-a', 'only-b', 'shared']);
      expect((await readdir(path.join(ab, 'dir'))).sort()).toEqual(['a', 'b']);
      const ba = await view(await sn.merge([b, a]));
      expect(await readFile(path.join(ba, 'shared'), 'utf8')).toBe('from a');
    });

    it('merge applies the deletions of a later input\'s layers (BuildKit MergeOp semantics)', async () => {
      const base = await make(null, async (d) => {
        await writeFile(path.join(d, 'x'), 'x');
        await writeFile(path.join(d, 'y'), 'y');
      });
      const upper = await make(base, (d) => rm(path.join(d, 'x')));
      const other = await make(null, async (d) => {
        await writeFile(path.join(d, 'x'), 'other x');
        await writeFile(path.join(d, 'z'), 'z');
      });
      const merged = await view(await sn.merge([other, upper]));
      expect((await readdir(merged)).sort()).toEqual(['y', 'z']);
    });

    it('a merged snapshot can be a parent, and the merge inputs are unchanged', async () => {
      const a = await make(null, (d) => writeFile(path.join(d, 'a'), 'a'));
      const b = await make(null, (d) => writeFile(path.join(d, 'b'), 'b'));
      const merged = await sn.merge([a, b]);
      const child = await make(merged, (d) => writeFile(path.join(d, 'c'), 'c'));
      expect((await readdir(await view(child))).sort()).toEqual(['a', 'b', 'c']);
      expect(await readdir(await view(a))).toEqual(['a']);
      expect(await readdir(await view(b))).toEqual(['b']);
    });

    it('discard removes what was written, is idempotent, and leaves no snapshot', async () => {
      const mut = await sn.prepare(null);
      await writeFile(path.join(mut.path, 'tmp'), 't');
      const { id } = mut;
      await mut.discard();
      await mut.discard();
      const gone = await stat(path.join(mut.path, 'tmp')).then(
        () => false,
        () => true,
      );
      expect(gone).toBe(true);
      const err = await sn.get(id).catch((e: unknown) => e);
      expect(isBktError(err, 'NOT_FOUND')).toBe(true);
    });

    it('discarding a child leaves the parent intact', async () => {
      const parent = await make(null, (d) => writeFile(path.join(d, 'p'), 'p'));
      const mut = await sn.prepare(parent);
      await rm(path.join(mut.path, 'p'));
      await mut.discard();
      expect(await readFile(path.join(await view(parent), 'p'), 'utf8')).toBe('p');
    });

    it('mounts can be released twice and snapshots mounted concurrently', async () => {
      const snap = await make(null, (d) => writeFile(path.join(d, 'f'), 'f'));
      const [m1, m2] = await Promise.all([snap.mount(), snap.mount()]);
      expect(await readFile(path.join(m1.path, 'f'), 'utf8')).toBe('f');
      expect(await readFile(path.join(m2.path, 'f'), 'utf8')).toBe('f');
      await m1.release();
      await m1.release();
      expect(await readFile(path.join(m2.path, 'f'), 'utf8')).toBe('f');
      await m2.release();
    });

    it('ids are unique across prepares', async () => {
      const ids = new Set<string>();
      for (let i = 0; i < 5; i++) {
        const m = await sn.prepare(null);
        ids.add(m.id);
        await m.discard();
      }
      expect(ids.size).toBe(5);
    });
  });
}
