import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BuildContext, Snapshot } from '@bkt/core';
import { layerTar } from '@bkt/oci';
import { createFileOpExecutor } from './index.js';
import { COPY_RECORDS, copyRecordId } from './reuse.js';
import { copy, dumpTree, fileOp, makeSnapshot, openTestEnv, type TestEnv } from '../file-ops.test-util.js';

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

/** `COPY . /ctx` as the Dockerfile frontend writes it, run as vertex `vertex`. */
async function copyContext(ctx: BuildContext, vertex: `sha256:${string}`, base: Snapshot, context: Snapshot): Promise<Snapshot> {
  const action = copy('/', '/ctx', { dirCopyContents: true, allowWildcard: true, followSymlink: true, allowEmptyWildcard: true });
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
      // The record now names the new result and its source.
      const rec = await env.ctx.records!.namespace(COPY_RECORDS).get(copyRecordId('sha256:v', 0));
      expect(rec?.data).toEqual({ result: s2.id, source: c2.id });
    });

    it('copies a file whose earlier result differs in what this copy would give it (mode)', async () => {
      const s1 = await copyContext(env.ctx, 'sha256:v', base, c1);
      // The earlier result's file given another mode behind the store's back stands for "not what this copy makes".
      await chmod(path.join(s1.layerPath(), 'ctx/d0/f1.txt'), 0o640);
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
      await env.ctx.records!.namespace(COPY_RECORDS).remove(copyRecordId('sha256:v', 0));
      await env.store.snapshotter.remove([s1.id]);
      const c2 = await makeSnapshot(env.ctx, newFile, c1);
      const s2 = await copyContext(env.ctx, 'sha256:v', base, c2);
      const whole = await copyContext(env.ctx, 'sha256:w', base, c2);
      expect(await layerDigest(s2)).toBe(await layerDigest(whole));
      expect(await readFile(path.join(s2.layerPath(), 'ctx/d0/f0.txt'), 'utf8')).toBe('file 0/0\n');
    });
  });
}
