import { createHash } from 'node:crypto';
import { chmod, cp, link, lstat, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BuildContext, Snapshot } from '@bkt/core';
import { layerTar } from '@bkt/oci';
import { createFileOpExecutor, writesOnlyNewTopLevel } from './index.js';
import { COPY_RECORDS, CopyReuse, LINEAGES_PER_COPY, MAX_COPY_RECORDS, copyRecordId } from './reuse.js';
import { copy, dumpDir, dumpTree, fileOp, makeSnapshot, openTestEnv, type TestEnv } from '../file-ops.test-util.js';

const exec = createFileOpExecutor();

/** Every file and directory of the contexts below is older; only `/ctx`, made by each copy, is newer (and clamped to it). */
const CLAMP = 1_650_000_000;

/** The layer tar digest of a snapshot's own changes, as an image export makes it (times clamped to `CLAMP`). */
async function layerDigest(s: Snapshot): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of layerTar(s.layerPath(), { withOpaque: s.parent !== null, clampMtime: CLAMP })) h.update(chunk);
  return h.digest('hex');
}

/** A snapshot as the local source hands it over: its maker knows its files' digests. */
function asContext(s: Snapshot): Snapshot {
  return { ...s, contentDigests: () => new Map() };
}

/** `COPY . /ctx` (or `dest`) as the Dockerfile frontend writes it, run as vertex `vertex`. */
async function copyContext(ctx: BuildContext, vertex: `sha256:${string}`, base: Snapshot, context: Snapshot, dest = '/ctx'): Promise<Snapshot> {
  const action = copy('/', dest, { dirCopyContents: true, allowWildcard: true, followSymlink: true, allowEmptyWildcard: true });
  const [out] = await exec.run(fileOp([action]), [{ snapshot: base }, { snapshot: asContext(context) }], { ...ctx, vertex: { digest: vertex, name: 'COPY . /ctx' } });
  return out!;
}

/** A new file in `d2` (whose time is kept). */
async function newFile(d: string): Promise<void> {
  await writeFile(path.join(d, 'd2/new.txt'), 'new');
  await utimes(path.join(d, 'd2/new.txt'), 1_500_000_100, 1_500_000_100);
  await utimes(path.join(d, 'd2'), 1_600_000_000, 1_600_000_000);
}

const inode = async (s: Snapshot, rel: string) => (await lstat(path.join(s.layerPath(), rel))).ino;

for (const kind of ['overlay', 'copy'] as const) {
  describe(`incremental copy (${kind} snapshotter)`, () => {
    let env: TestEnv;
    let base: Snapshot;
    let c1: Snapshot;
    beforeEach(async () => {
      env = await openTestEnv(kind);
      base = await makeSnapshot(env.ctx, async (d) => {
        await mkdir(path.join(d, 'etc'));
        await writeFile(path.join(d, 'etc/hostname'), 'base\n');
      });
      // The context as the local source makes it: a base layer, then a layer of the changes over it.
      c1 = await makeSnapshot(env.ctx, async (d) => {
        await writeFile(path.join(d, 'top.txt'), 'top');
        await utimes(path.join(d, 'top.txt'), 1_500_000_000, 1_500_000_000);
        for (let i = 0; i < 3; i++) {
          await mkdir(path.join(d, `d${i}`));
          for (let f = 0; f < 5; f++) {
            await writeFile(path.join(d, `d${i}/f${f}.txt`), `file ${i}/${f}\n`);
            await utimes(path.join(d, `d${i}/f${f}.txt`), 1_500_000_000 + f, 1_500_000_000 + f);
          }
          await chmod(path.join(d, `d${i}/f0.txt`), 0o600);
          await utimes(path.join(d, `d${i}`), 1_600_000_000, 1_600_000_000);
        }
      });
    });
    afterEach(async () => {
      await env.close();
    });

    it('takes unchanged files from the earlier result; the tree and layer are those of a whole copy', async () => {
      const s1 = await copyContext(env.ctx, 'sha256:v', base, c1);
      const c2 = await makeSnapshot(
        env.ctx,
        async (d) => {
          // Same size, same mtime, other bytes: a new file in the new layer all the same.
          const t = (await lstat(path.join(d, 'd1/f2.txt'))).mtime;
          await rm(path.join(d, 'd1/f2.txt'));
          await writeFile(path.join(d, 'd1/f2.txt'), 'FILE 1/2\n');
          await utimes(path.join(d, 'd1/f2.txt'), t, t);
          await newFile(d);
          await utimes(path.join(d, 'd1'), 1_600_000_000, 1_600_000_000);
        },
        c1,
      );
      const s2 = await copyContext(env.ctx, 'sha256:v', base, c2);
      // The same copy with nothing to reuse (another vertex): the whole copy.
      const whole = await copyContext(env.ctx, 'sha256:w', base, c2);

      expect(await dumpTree(s2, { withTimes: true })).toEqual(await dumpTree(whole, { withTimes: true }));
      expect(await layerDigest(s2)).toBe(await layerDigest(whole));
      expect((await dumpTree(s2))['ctx/d1/f2.txt']!.content).toBe('FILE 1/2\n');
      // The earlier result is untouched.
      expect((await dumpTree(s1))['ctx/d1/f2.txt']!.content).toBe('file 1/2\n');
      if (kind === 'overlay') {
        expect(await inode(s2, 'ctx/d0/f3.txt')).toBe(await inode(s1, 'ctx/d0/f3.txt'));
        expect(await inode(s2, 'ctx/d1/f1.txt')).toBe(await inode(s1, 'ctx/d1/f1.txt'));
        expect(await inode(s2, 'ctx/d1/f2.txt')).not.toBe(await inode(s1, 'ctx/d1/f2.txt'));
      } else {
        // The copy snapshotter's trees are copies: nothing is the earlier file, so everything is copied.
        expect(await inode(s2, 'ctx/d0/f3.txt')).not.toBe(await inode(s1, 'ctx/d0/f3.txt'));
      }
      // The record of the source's lineage (its bottom snapshot) now names the new result, its source and the source path it resolved; it keeps only the result alive.
      const rec = await env.ctx.records!.namespace(COPY_RECORDS).get(copyRecordId('sha256:v', 0, c1.id));
      expect(rec?.data).toEqual({ copy: expect.any(String), result: s2.id, source: c2.id, sources: JSON.stringify(['/']) });
      expect(rec?.snapshots).toEqual([s2.id]);
    });

    it('takes nothing when the earlier source is gone (a prune may remove it: the record does not keep it)', async () => {
      // A context of the same lineage not under the next one (another sync over c1), so nothing keeps it but the store's own records.
      const c0 = await makeSnapshot(env.ctx, async (d) => writeFile(path.join(d, 'a.txt'), 'a'), c1);
      await copyContext(env.ctx, 'sha256:v', base, c0);
      const rec = await env.ctx.records!.namespace(COPY_RECORDS).get(copyRecordId('sha256:v', 0, c1.id));
      expect(rec?.data.source).toBe(c0.id);
      await env.store.snapshotter.remove([c0.id]);
      const c2 = await makeSnapshot(env.ctx, newFile, c1);
      const mount = await c2.mount();
      try {
        const reuse = await CopyReuse.open({ ...env.ctx, vertex: { digest: 'sha256:v', name: 'COPY . /ctx' } }, 0, c2, mount.path);
        expect(reuse).toBeUndefined();
      } finally {
        await mount.release();
      }
    });

    it('takes files from the earlier run of the same lineage when two contexts are copied in turn (two clients of one daemon)', async () => {
      // Another client's directory: same paths, sizes and times, its own files (another lineage).
      const other = await makeSnapshot(env.ctx, async (d) => {
        await cp(c1.layerPath(), d, { recursive: true, preserveTimestamps: true });
        await writeFile(path.join(d, 'd0/f3.txt'), 'other 0/3\n');
        await utimes(path.join(d, 'd0/f3.txt'), 1_500_000_003, 1_500_000_003);
      });
      const s1 = await copyContext(env.ctx, 'sha256:v', base, c1);
      const o1 = await copyContext(env.ctx, 'sha256:v', base, other);
      const c2 = await makeSnapshot(env.ctx, newFile, c1);
      const s2 = await copyContext(env.ctx, 'sha256:v', base, c2);
      const o2 = await copyContext(env.ctx, 'sha256:v', base, await makeSnapshot(env.ctx, newFile, other));
      expect(await readFile(path.join(s2.layerPath(), 'ctx/d0/f3.txt'), 'utf8')).toBe('file 0/3\n');
      expect(await readFile(path.join(o2.layerPath(), 'ctx/d0/f3.txt'), 'utf8')).toBe('other 0/3\n');
      expect(await dumpTree(s2, { withTimes: true })).toEqual(await dumpTree(await copyContext(env.ctx, 'sha256:w', base, c2), { withTimes: true }));
      if (kind === 'overlay') {
        expect(await inode(s2, 'ctx/d0/f3.txt')).toBe(await inode(s1, 'ctx/d0/f3.txt'));
        expect(await inode(o2, 'ctx/d0/f3.txt')).toBe(await inode(o1, 'ctx/d0/f3.txt'));
        expect(await inode(o2, 'ctx/d1/f1.txt')).toBe(await inode(o1, 'ctx/d1/f1.txt'));
      }
    });

    it(`remembers at most LINEAGES_PER_COPY lineages of one copy, forgetting the least recently written`, async () => {
      const ns = env.ctx.records!.namespace(COPY_RECORDS);
      const roots: Snapshot[] = [];
      for (let n = 0; n < LINEAGES_PER_COPY + 1; n++) {
        await new Promise((r) => setTimeout(r, 3)); // times are in milliseconds: one write per tick
        const root = await makeSnapshot(env.ctx, async (d) => writeFile(path.join(d, 'a.txt'), `lineage ${n}`));
        roots.push(root);
        await copyContext(env.ctx, 'sha256:v', base, root);
      }
      // Another copy's record is not counted with them.
      await copyContext(env.ctx, 'sha256:w', base, c1);
      const ids = (await ns.list()).map((r) => r.id);
      expect(ids.length).toBe(LINEAGES_PER_COPY + 1);
      expect(ids).not.toContain(copyRecordId('sha256:v', 0, roots[0]!.id));
      expect(ids).toContain(copyRecordId('sha256:v', 0, roots[1]!.id));
      expect(ids).toContain(copyRecordId('sha256:w', 0, c1.id));
    });

    it('keeps at most MAX_COPY_RECORDS copies, forgetting the least recently written', async () => {
      const s1 = await copyContext(env.ctx, 'sha256:v', base, c1);
      const ns = env.ctx.records!.namespace(COPY_RECORDS);
      for (let n = 0; n < MAX_COPY_RECORDS + 2; n++) {
        await new Promise((r) => setTimeout(r, 3)); // times are in milliseconds: one write per tick
        await CopyReuse.remember({ ...env.ctx, vertex: { digest: `sha256:w${n}`, name: 'COPY' } }, 0, c1, ['/'], s1);
      }
      const ids = (await ns.list()).map((r) => r.id);
      expect(ids.length).toBe(MAX_COPY_RECORDS);
      expect(ids).not.toContain(copyRecordId('sha256:v', 0, c1.id));
      expect(ids).not.toContain(copyRecordId('sha256:w0', 0, c1.id));
      expect(ids).toContain(copyRecordId(`sha256:w${MAX_COPY_RECORDS + 1}`, 0, c1.id));
    });

    it('never links through a symlink in the earlier result (a host file of the same size, owner, mode and time)', async () => {
      const s1 = await copyContext(env.ctx, 'sha256:v', base, c1);
      // A directory outside every tree holding files that pass every metadata check, with other bytes.
      const host = path.join(env.dir, 'host');
      await cp(path.join(s1.layerPath(), 'ctx/d0'), host, { recursive: true, preserveTimestamps: true });
      for (let f = 0; f < 5; f++) {
        const p = path.join(host, `f${f}.txt`);
        const st = await lstat(p);
        await writeFile(p, `FILE 0/${f}\n`);
        await utimes(p, st.atime, st.mtime);
      }
      // The earlier result's directory replaced by an absolute symlink (as a copy replacing it with a symlink leaves it).
      await rm(path.join(s1.layerPath(), 'ctx/d0'), { recursive: true });
      await symlink(host, path.join(s1.layerPath(), 'ctx/d0'));
      const c2 = await makeSnapshot(env.ctx, newFile, c1);
      const s2 = await copyContext(env.ctx, 'sha256:v', base, c2);
      for (let f = 0; f < 5; f++) {
        expect(await readFile(path.join(s2.layerPath(), `ctx/d0/f${f}.txt`), 'utf8')).toBe(`file 0/${f}\n`);
        expect(await inode(s2, `ctx/d0/f${f}.txt`)).not.toBe((await lstat(path.join(host, `f${f}.txt`))).ino);
      }
      expect(await readFile(path.join(host, 'f0.txt'), 'utf8')).toBe('FILE 0/0\n');
    });

    it('takes top-level files too when the destination is a directory the copy makes (`COPY . /ctx/`)', async () => {
      const s1 = await copyContext(env.ctx, 'sha256:v', base, c1, '/ctx/');
      const c2 = await makeSnapshot(env.ctx, newFile, c1);
      const s2 = await copyContext(env.ctx, 'sha256:v', base, c2, '/ctx/');
      const whole = await copyContext(env.ctx, 'sha256:w', base, c2, '/ctx/');
      expect(await dumpTree(s2, { withTimes: true })).toEqual(await dumpTree(whole, { withTimes: true }));
      expect(await layerDigest(s2)).toBe(await layerDigest(whole));
      if (kind === 'overlay') {
        expect(await inode(s2, 'ctx/top.txt')).toBe(await inode(s1, 'ctx/top.txt'));
        expect(await inode(s2, 'ctx/d0/f3.txt')).toBe(await inode(s1, 'ctx/d0/f3.txt'));
      }
    });

    it('takes files into a destination the base already has (the copy goes through the mounted tree)', async () => {
      const withCtx = await makeSnapshot(env.ctx, async (d) => {
        await mkdir(path.join(d, 'ctx'));
        await writeFile(path.join(d, 'ctx/base.txt'), 'from the base\n');
        await utimes(path.join(d, 'ctx'), 1_400_000_000, 1_400_000_000);
      }, base);
      const s1 = await copyContext(env.ctx, 'sha256:v', withCtx, c1, '/ctx/');
      const c2 = await makeSnapshot(env.ctx, newFile, c1);
      const s2 = await copyContext(env.ctx, 'sha256:v', withCtx, c2, '/ctx/');
      const whole = await copyContext(env.ctx, 'sha256:w', withCtx, c2, '/ctx/');
      expect(await dumpTree(s2, { withTimes: true })).toEqual(await dumpTree(whole, { withTimes: true }));
      expect(await layerDigest(s2)).toBe(await layerDigest(whole));
      expect((await dumpTree(s2))['ctx/base.txt']!.content).toBe('from the base\n');
      if (kind === 'overlay') expect(await inode(s2, 'ctx/d0/f3.txt')).toBe(await inode(s1, 'ctx/d0/f3.txt'));
    });

    it('copies a file whose earlier result differs in what this copy would give it (mode)', async () => {
      const s1 = await copyContext(env.ctx, 'sha256:v', base, c1);
      // The earlier result's file replaced by one of another mode behind the store's back stands for "not what this copy makes"
      // (its own file, not the context's, which the earlier copy linked).
      const earlier = path.join(s1.layerPath(), 'ctx/d0/f1.txt');
      const st = await lstat(earlier);
      await rm(earlier);
      await writeFile(earlier, 'file 0/1\n', { mode: 0o640 });
      await chmod(earlier, 0o640);
      await utimes(earlier, st.atime, st.mtime);
      const c2 = await makeSnapshot(env.ctx, newFile, c1);
      const s2 = await copyContext(env.ctx, 'sha256:v', base, c2);
      const whole = await copyContext(env.ctx, 'sha256:w', base, c2);
      expect(await dumpTree(s2, { withTimes: true })).toEqual(await dumpTree(whole, { withTimes: true }));
      expect(await layerDigest(s2)).toBe(await layerDigest(whole));
      if (kind === 'overlay') {
        expect(await inode(s2, 'ctx/d0/f1.txt')).not.toBe(await inode(s1, 'ctx/d0/f1.txt'));
        expect(await inode(s2, 'ctx/d0/f2.txt')).toBe(await inode(s1, 'ctx/d0/f2.txt'));
      }
    });

    it('remembers no copy from a result whose files it does not know (a stage)', async () => {
      const action = copy('/', '/ctx', { dirCopyContents: true, allowWildcard: true, followSymlink: true, allowEmptyWildcard: true });
      await exec.run(fileOp([action]), [{ snapshot: base }, { snapshot: c1 }], { ...env.ctx, vertex: { digest: 'sha256:v', name: 'COPY --from' } });
      expect(await env.ctx.records!.namespace(COPY_RECORDS).list()).toEqual([]);
    });

    it('copies whole when the earlier result is gone', async () => {
      const s1 = await copyContext(env.ctx, 'sha256:v', base, c1);
      await env.ctx.records!.namespace(COPY_RECORDS).remove(copyRecordId('sha256:v', 0, c1.id));
      await env.store.snapshotter.remove([s1.id]);
      const c2 = await makeSnapshot(env.ctx, newFile, c1);
      const s2 = await copyContext(env.ctx, 'sha256:v', base, c2);
      const whole = await copyContext(env.ctx, 'sha256:w', base, c2);
      expect(await layerDigest(s2)).toBe(await layerDigest(whole));
      expect(await readFile(path.join(s2.layerPath(), 'ctx/d0/f0.txt'), 'utf8')).toBe('file 0/0\n');
    });
  });
}

/** `COPY . /ctx` with `extra` options (owner, mode, timestamp) from `context`, as a local context or (`asStage`) as a stage's result. */
async function copyWith(ctx: BuildContext, vertex: `sha256:${string}`, base: Snapshot, context: Snapshot, extra: Parameters<typeof copy>[2] = {}, asStage = false): Promise<Snapshot> {
  const action = copy('/', '/ctx', { dirCopyContents: true, allowWildcard: true, followSymlink: true, allowEmptyWildcard: true, ...extra });
  const [out] = await exec.run(fileOp([action]), [{ snapshot: base }, { snapshot: asStage ? context : asContext(context) }], { ...ctx, vertex: { digest: vertex, name: 'COPY . /ctx' } });
  return out!;
}

for (const kind of ['overlay', 'copy'] as const) {
  describe(`copies linking a local context's files (${kind} snapshotter)`, () => {
    let env: TestEnv;
    let base: Snapshot;
    let c1: Snapshot;
    beforeEach(async () => {
      env = await openTestEnv(kind);
      base = await makeSnapshot(env.ctx, async (d) => {
        await mkdir(path.join(d, 'etc'));
      });
      c1 = await makeSnapshot(env.ctx, async (d) => {
        for (let i = 0; i < 2; i++) {
          await mkdir(path.join(d, `d${i}`));
          for (let f = 0; f < 3; f++) {
            await writeFile(path.join(d, `d${i}/f${f}.txt`), `file ${i}/${f}\n`);
            await utimes(path.join(d, `d${i}/f${f}.txt`), 1_500_000_000 + f, 1_500_000_000 + f);
          }
          await chmod(path.join(d, `d${i}/f0.txt`), 0o4755);
          await utimes(path.join(d, `d${i}`), 1_600_000_000, 1_600_000_000);
        }
      });
    });
    afterEach(async () => {
      await env.close();
    });

    const ctxInode = async (rel: string) => (await lstat(path.join(c1.layerPath(), rel))).ino;
    /** The result's file as the result's tree has it (for the copy snapshotter, its full tree's). */
    const treeInode = async (s: Snapshot, rel: string) => {
      const m = await s.mount();
      try {
        return (await lstat(path.join(m.path, rel))).ino;
      } finally {
        await m.release();
      }
    };

    it('links the context file itself when the copy keeps its owner, mode and times; the tree and layer are those of a copy', async () => {
      // The snapshotter is told which snapshots' files were linked (their measured sizes go stale).
      const told: string[][] = [];
      const snapshotter = new Proxy(env.ctx.snapshotter, {
        get: (target, key) => {
          if (key === 'linkedFrom') return (ids: readonly string[]) => told.push([...ids]);
          const v = Reflect.get(target, key, target) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      const linked = await copyWith({ ...env.ctx, snapshotter }, 'sha256:v', base, c1);
      expect(told).toEqual([[c1.id]]);
      const copied = await copyWith(env.ctx, 'sha256:s', base, c1, {}, true);
      expect(await dumpTree(linked, { withTimes: true })).toEqual(await dumpTree(copied, { withTimes: true }));
      expect(await layerDigest(linked)).toBe(await layerDigest(copied));
      expect((await dumpTree(linked))['ctx/d0/f0.txt']).toMatchObject({ mode: '4755', content: 'file 0/0\n' });
      for (const rel of ['d0/f0.txt', 'd1/f2.txt']) {
        expect(await treeInode(linked, `ctx/${rel}`)).toBe(await ctxInode(rel));
        expect(await treeInode(copied, `ctx/${rel}`)).not.toBe(await ctxInode(rel));
      }
    });

    it('copies what the copy changes: another owner, mode or time', async () => {
      for (const [n, extra] of [
        [1, { owner: { user: 1000, group: 1000 } }],
        [2, { mode: 0o600 }],
        [3, { timestamp: 1_700_000_000_000_000_000 }],
      ] as const) {
        const out = await copyWith(env.ctx, `sha256:o${n}`, base, c1, extra);
        expect(await dumpTree(out, { withTimes: true })).toEqual(await dumpTree(await copyWith(env.ctx, `sha256:p${n}`, base, c1, extra, true), { withTimes: true }));
        expect(await treeInode(out, 'ctx/d0/f1.txt')).not.toBe(await ctxInode('d0/f1.txt'));
      }
      // Nothing was linked to the context: its files still have one link each.
      expect((await lstat(path.join(c1.layerPath(), 'd0/f1.txt'))).nlink).toBe(1);
    });

    it('links no context file into a copy onto a tree holding the context (`FROM ctx` + `COPY --from=ctx`), nor onto scratch', async () => {
      const onto = await copyWith(env.ctx, 'sha256:x', c1, c1);
      const tree = await fileInodes(onto);
      expect([...tree.values()].filter((rel) => rel.startsWith('ctx/')).length).toBe(6);
      // Each file once: the context's own path and the copy's are two inodes, as a plain copy makes them.
      expect(tree.size).toBe(12);
      expect(await dumpTree(onto, { withTimes: true })).toEqual(await dumpTree(await copyWith(env.ctx, 'sha256:y', c1, c1, {}, true), { withTimes: true }));

      const action = copy('/', '/ctx', { dirCopyContents: true, allowWildcard: true, followSymlink: true, allowEmptyWildcard: true });
      const [scratch] = await exec.run(fileOp([action]), [{ snapshot: null }, { snapshot: asContext(c1) }], { ...env.ctx, vertex: { digest: 'sha256:z', name: 'COPY --link . /ctx' } });
      expect(await treeInode(scratch!, 'ctx/d0/f1.txt')).not.toBe(await ctxInode('d0/f1.txt'));
      expect((await lstat(path.join(c1.layerPath(), 'd0/f1.txt'))).nlink).toBe(1);
    });

    it('links a context file into the results of one copy only; another copy of it copies', async () => {
      await copyWith(env.ctx, 'sha256:v', base, c1);
      const other = await copyWith(env.ctx, 'sha256:w', base, c1);
      expect(await treeInode(other, 'ctx/d0/f1.txt')).not.toBe(await ctxInode('d0/f1.txt'));
      expect((await lstat(path.join(c1.layerPath(), 'd0/f1.txt'))).nlink).toBe(kind === 'overlay' ? 2 : 3);
    });

    /** Every regular file's inode under the result's tree (for the copy snapshotter, its full tree's), by path. */
    const fileInodes = async (s: Snapshot) => {
      const m = await s.mount();
      try {
        const out = new Map<number, string>();
        for (const rel of Object.keys(await dumpDir(m.path))) {
          const st = await lstat(path.join(m.path, rel));
          if (st.isFile()) out.set(st.ino, rel);
        }
        return out;
      } finally {
        await m.release();
      }
    };
    /** Whether two results share a regular file's inode (a merge of them would hold it as one hardlinked file). */
    const sharedInodes = async (a: Snapshot, b: Snapshot) => {
      const inB = await fileInodes(b);
      return [...(await fileInodes(a))].filter(([ino]) => inB.has(ino)).map(([, rel]) => rel);
    };

    it('links a context file into one of two copies of it run at once (`COPY . /a` and `COPY . /b` in parallel); the other copies', async () => {
      // The walk ends with a large hardlinked file, copied (not linked) asynchronously: each copy waits there with every
      // other file matched and not yet linked, so both match them before either links.
      const c = await makeSnapshot(env.ctx, async (d) => {
        for (let i = 0; i < 4; i++) {
          await mkdir(path.join(d, `d${i}`));
          for (let f = 0; f < 20; f++) await writeFile(path.join(d, `d${i}/f${f}.txt`), `file ${i}/${f}\n`);
        }
        await mkdir(path.join(d, 'z'));
        await writeFile(path.join(d, 'z/big'), Buffer.alloc(8 << 20, 1));
        await link(path.join(d, 'z/big'), path.join(d, 'z/big-link'));
      });
      const copied = await copyWith(env.ctx, 'sha256:s', base, c, {}, true);
      const [a, b] = await Promise.all([copyWith(env.ctx, 'sha256:a', base, c), copyWith(env.ctx, 'sha256:b', base, c)]);
      expect(await sharedInodes(a, b)).toEqual([]);
      // Still linked into one of them (the first to link keeps its links).
      const ctxFile = (await lstat(path.join(c.layerPath(), 'd0/f0.txt'))).ino;
      expect([(await fileInodes(a)).has(ctxFile), (await fileInodes(b)).has(ctxFile)].filter(Boolean)).toHaveLength(1);
      for (const s of [a, b]) {
        expect(await dumpTree(s, { withTimes: true })).toEqual(await dumpTree(copied, { withTimes: true }));
        expect(await layerDigest(s)).toBe(await layerDigest(copied));
      }
    });

    it('keeps a link only when the link count is the one the match saw plus it (both copies matched before either linked)', async () => {
      const mount = await c1.mount();
      try {
        const writtenA = path.join(env.dir, 'written-a');
        const writtenB = path.join(env.dir, 'written-b');
        const reuses: CopyReuse[] = [];
        for (const [vertex, dir] of [
          ['sha256:a', writtenA],
          ['sha256:b', writtenB],
        ] as const) {
          const reuse = (await CopyReuse.forCopy({ ...env.ctx, vertex: { digest: vertex, name: 'COPY . /ctx' } }, 0, c1, mount.path, base))!;
          reuse.useFor(['/']);
          await mkdir(path.join(dir, 'ctx/d0'), { recursive: true });
          const st = await lstat(path.join(mount.path, 'd0/f1.txt'));
          const info = { uid: st.uid, gid: st.gid, perm: st.mode & 0o7777, atime: st.atimeMs / 1000, mtime: st.mtimeMs / 1000 };
          expect(reuse.match('d0/f1.txt', st, 'ctx/d0/f1.txt', info)).toBe(true);
          reuses.push(reuse);
        }
        for (const [i, dir] of [writtenA, writtenB].entries()) reuses[i]!.link(dir);
        const [a, b, ctxFile] = await Promise.all([path.join(writtenA, 'ctx/d0/f1.txt'), path.join(writtenB, 'ctx/d0/f1.txt'), path.join(c1.layerPath(), 'd0/f1.txt')].map((p) => lstat(p)));
        expect(a!.ino).toBe(ctxFile!.ino);
        expect(b!.ino).not.toBe(ctxFile!.ino);
        expect(ctxFile!.nlink).toBe(2);
        expect(await readFile(path.join(writtenB, 'ctx/d0/f1.txt'), 'utf8')).toBe('file 0/1\n');
        expect({ mode: b!.mode & 0o7777, mtime: b!.mtimeMs }).toEqual({ mode: ctxFile!.mode & 0o7777, mtime: ctxFile!.mtimeMs });
        for (const r of reuses) await r.release();
      } finally {
        await mount.release();
      }
    });

    it('copies a hardlink inside the context as the copier keeps it (both paths one new inode)', async () => {
      const c = await makeSnapshot(env.ctx, async (d) => {
        await writeFile(path.join(d, 'a'), 'same inode');
        await link(path.join(d, 'a'), path.join(d, 'b'));
        await writeFile(path.join(d, 'c'), 'alone');
      });
      const out = await copyWith(env.ctx, 'sha256:v', base, c);
      const [a, b, cc] = await Promise.all(['ctx/a', 'ctx/b', 'ctx/c'].map((r) => treeInode(out, r)));
      expect(a).toBe(b);
      expect(a).not.toBe((await lstat(path.join(c.layerPath(), 'a'))).ino);
      expect(cc).toBe((await lstat(path.join(c.layerPath(), 'c'))).ino);
    });

    it('links every file of a changed context: the unchanged ones shared with the earlier result, the new ones from the new layer', async () => {
      const s1 = await copyWith(env.ctx, 'sha256:v', base, c1);
      const c2 = await makeSnapshot(env.ctx, async (d) => {
        await writeFile(path.join(d, 'd1/new.txt'), 'new');
        await utimes(path.join(d, 'd1/new.txt'), 1_500_000_100, 1_500_000_100);
        await utimes(path.join(d, 'd1'), 1_600_000_000, 1_600_000_000);
      }, c1);
      const s2 = await copyWith(env.ctx, 'sha256:v', base, c2);
      expect(await dumpTree(s2, { withTimes: true })).toEqual(await dumpTree(await copyWith(env.ctx, 'sha256:s', base, c2, {}, true), { withTimes: true }));
      expect((await dumpTree(s1))['ctx/d1/new.txt']).toBeUndefined();
      if (kind === 'overlay') {
        expect(await treeInode(s2, 'ctx/d0/f1.txt')).toBe(await treeInode(s1, 'ctx/d0/f1.txt'));
        expect(await treeInode(s2, 'ctx/d1/new.txt')).toBe((await lstat(path.join(c2.layerPath(), 'd1/new.txt'))).ino);
      }
    });
  });
}

/** `COPY dir* /dst` (a wildcard matching several directories) run as vertex `sha256:v`. */
async function copyDirs(ctx: BuildContext, base: Snapshot, context: Snapshot, alwaysReplaceExistingDestPaths = false): Promise<Snapshot> {
  const action = copy('/dir*', '/dst', { dirCopyContents: true, allowWildcard: true, followSymlink: true, alwaysReplaceExistingDestPaths });
  const [out] = await exec.run(fileOp([action]), [{ snapshot: base }, { snapshot: asContext(context) }], { ...ctx, vertex: { digest: 'sha256:v', name: 'COPY dir* /dst' } });
  return out!;
}

describe('incremental copy of several sources', () => {
  let env: TestEnv;
  let base: Snapshot;
  beforeEach(async () => {
    env = await openTestEnv('overlay');
    base = await makeSnapshot(env.ctx, async (d) => {
      await mkdir(path.join(d, 'etc'));
    });
  });
  afterEach(async () => {
    await env.close();
  });

  /** dir1/x and dir2/x: same size, same time, other bytes. */
  const twoDirs = (d: string) =>
    (async () => {
      for (const [n, c] of [
        ['dir1', 'AAAA'],
        ['dir2', 'BBBB'],
      ] as const) {
        await mkdir(path.join(d, n));
        await writeFile(path.join(d, n, 'x'), c);
        await utimes(path.join(d, n, 'x'), 1_500_000_000, 1_500_000_000);
      }
    })();

  it('copies them all again when they write the same path (the last one wins)', async () => {
    const c1 = await makeSnapshot(env.ctx, twoDirs);
    const s1 = await copyDirs(env.ctx, base, c1);
    expect(await readFile(path.join(s1.layerPath(), 'dst/x'), 'utf8')).toBe('BBBB');
    const c2 = await makeSnapshot(env.ctx, async (d) => writeFile(path.join(d, 'dir2/y'), 'new'), c1);
    const s2 = await copyDirs(env.ctx, base, c2);
    expect(await readFile(path.join(s2.layerPath(), 'dst/x'), 'utf8')).toBe('BBBB');
  });

  it('takes nothing from a run that resolved other sources', async () => {
    const c1 = await makeSnapshot(env.ctx, twoDirs);
    await copyDirs(env.ctx, base, c1);
    const c2 = await makeSnapshot(env.ctx, async (d) => rm(path.join(d, 'dir2'), { recursive: true }), c1);
    const s2 = await copyDirs(env.ctx, base, c2);
    expect(await readFile(path.join(s2.layerPath(), 'dst/x'), 'utf8')).toBe('AAAA');
    // Run again, one source both times: this one's files are taken.
    const c3 = await makeSnapshot(env.ctx, async (d) => writeFile(path.join(d, 'dir1/y'), 'new'), c2);
    const s3 = await copyDirs(env.ctx, base, c3);
    expect(await readFile(path.join(s3.layerPath(), 'dst/x'), 'utf8')).toBe('AAAA');
    expect(await inode(s3, 'dst/x')).toBe(await inode(s2, 'dst/x'));
  });

  it('never links a host file through a symlink an earlier source left in the result', async () => {
    const host = path.join(env.dir, 'host');
    await mkdir(host);
    await writeFile(path.join(host, 'x'), 'HOST');
    await utimes(path.join(host, 'x'), 1_500_000_000, 1_500_000_000);
    const c1 = await makeSnapshot(env.ctx, async (d) => {
      await mkdir(path.join(d, 'dir1/sub'), { recursive: true });
      await writeFile(path.join(d, 'dir1/sub/x'), 'AAAA');
      await utimes(path.join(d, 'dir1/sub/x'), 1_500_000_000, 1_500_000_000);
      await mkdir(path.join(d, 'dir2'));
      await symlink(host, path.join(d, 'dir2/sub'));
    });
    await copyDirs(env.ctx, base, c1, true);
    const c2 = await makeSnapshot(env.ctx, async (d) => rm(path.join(d, 'dir2'), { recursive: true }), c1);
    const s2 = await copyDirs(env.ctx, base, c2, true);
    expect(await readFile(path.join(s2.layerPath(), 'dst/sub/x'), 'utf8')).toBe('AAAA');
    expect(await inode(s2, 'dst/sub/x')).not.toBe((await lstat(path.join(host, 'x'))).ino);
  });
});

describe('writesOnlyNewTopLevel', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(process.env.TMPDIR ?? '/tmp', 'bkt-toplevel-'));
    for (const d of ['l1', 'l2', 'upper', 'work']) await mkdir(path.join(dir, d));
    await mkdir(path.join(dir, 'l2/etc'));
    await writeFile(path.join(dir, 'l1/top.txt'), 'x');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const options = () => `lowerdir=${dir}/l1:${dir}/l2,upperdir=${dir}/upper,workdir=${dir}/work`;

  it('holds for a first name no lower layer has, into an empty upper directory', () => {
    expect(writesOnlyNewTopLevel(options(), path.join(dir, 'upper'), '/ctx')).toBe(true);
    expect(writesOnlyNewTopLevel(options(), path.join(dir, 'upper'), '/ctx/sub/')).toBe(true);
    expect(writesOnlyNewTopLevel(options(), path.join(dir, 'upper'), 'ctx')).toBe(true);
  });

  it('fails for a name a lower layer has, the root, a name above it, or a written upper directory', async () => {
    expect(writesOnlyNewTopLevel(options(), path.join(dir, 'upper'), '/etc/app')).toBe(false);
    expect(writesOnlyNewTopLevel(options(), path.join(dir, 'upper'), '/top.txt')).toBe(false);
    expect(writesOnlyNewTopLevel(options(), path.join(dir, 'upper'), '/')).toBe(false);
    expect(writesOnlyNewTopLevel(options(), path.join(dir, 'upper'), '/..')).toBe(false);
    expect(writesOnlyNewTopLevel(options(), path.join(dir, 'upper'), '/x/../etc/app')).toBe(false);
    await writeFile(path.join(dir, 'upper/written'), 'x');
    expect(writesOnlyNewTopLevel(options(), path.join(dir, 'upper'), '/ctx')).toBe(false);
  });

  it('fails for a name a lower layer whites out, and for options it cannot read', () => {
    execFileSync('mknod', [path.join(dir, 'l1/gone'), 'c', '0', '0']);
    expect(writesOnlyNewTopLevel(options(), path.join(dir, 'upper'), '/gone')).toBe(false);
    expect(writesOnlyNewTopLevel(`upperdir=${dir}/upper,workdir=${dir}/work`, path.join(dir, 'upper'), '/ctx')).toBe(false);
    expect(writesOnlyNewTopLevel(`lowerdir=${dir}/missing,upperdir=${dir}/upper`, path.join(dir, 'upper'), '/ctx')).toBe(false);
    expect(writesOnlyNewTopLevel(`lowerdir=relative,upperdir=${dir}/upper`, path.join(dir, 'upper'), '/ctx')).toBe(false);
  });
});
