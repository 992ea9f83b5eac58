import { chmod, chown, lutimes, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { walk } from '@bkt/fsutil';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import type { Snapshot } from '@bkt/core';
import { createDiffOpExecutor } from './diff.js';
import { createMergeOpExecutor } from './merge.js';
import { dumpDir, dumpTree, makeSnapshot, openTestEnv, type TestEnv } from './file-ops.test-util.js';

const diffExec = createDiffOpExecutor();
const mergeExec = createMergeOpExecutor();

const diffOp = (lower: number, upper: number) => pb.DiffOp.fromPartial({ lower: { input: lower }, upper: { input: upper } });
const mergeOp = (n: number) => pb.MergeOp.fromPartial({ inputs: Array.from({ length: n }, (_, i) => ({ input: i })) });

async function fillA(d: string) {
  await mkdir(path.join(d, 'dir/sub'), { recursive: true });
  await mkdir(path.join(d, 'gone-dir/deep'), { recursive: true });
  await mkdir(path.join(d, 'becomes-link'));
  await writeFile(path.join(d, 'dir/keep.txt'), 'keep');
  await writeFile(path.join(d, 'dir/change.txt'), 'old');
  await writeFile(path.join(d, 'dir/sub/same-size.txt'), 'aaaa');
  await writeFile(path.join(d, 'gone.txt'), 'bye');
  await writeFile(path.join(d, 'gone-dir/deep/f'), 'f');
  await writeFile(path.join(d, 'becomes-dir'), 'file');
  await writeFile(path.join(d, 'chmod.sh'), 'x');
  await writeFile(path.join(d, 'chown.txt'), 'x');
  await symlink('dir/keep.txt', path.join(d, 'link'));
}

/** Sets every entry's times to one instant, so equal files compare equal across trees. */
async function settleTimes(d: string) {
  for await (const e of walk(d)) await lutimes(e.absPath, 1e6, 1e6);
}

/** B = A with every kind of change. */
async function changeToB(d: string) {
  await writeFile(path.join(d, 'dir/change.txt'), 'new content');
  await writeFile(path.join(d, 'dir/sub/same-size.txt'), 'bbbb');
  await rm(path.join(d, 'gone.txt'));
  await rm(path.join(d, 'gone-dir'), { recursive: true });
  await rm(path.join(d, 'becomes-dir'));
  await mkdir(path.join(d, 'becomes-dir'));
  await writeFile(path.join(d, 'becomes-dir/inside'), 'in');
  await rm(path.join(d, 'becomes-link'), { recursive: true });
  await symlink('/dir', path.join(d, 'becomes-link'));
  await chmod(path.join(d, 'chmod.sh'), 0o755);
  await chown(path.join(d, 'chown.txt'), 99, 98);
  await rm(path.join(d, 'link'));
  await symlink('dir/change.txt', path.join(d, 'link'));
  await mkdir(path.join(d, 'new/nested'), { recursive: true });
  await writeFile(path.join(d, 'new/nested/n.txt'), 'n');
}

for (const kind of ['overlay', 'copy'] as const) {
  describe(`diff and merge (${kind} snapshotter)`, () => {
    let env: TestEnv;
    beforeAll(async () => {
      env = await openTestEnv(kind);
    });
    afterAll(() => env.close());

    const diff = async (lower: Snapshot | null, upper: Snapshot | null) =>
      (await diffExec.run(diffOp(0, 1), [{ snapshot: lower }, { snapshot: upper }], env.ctx))[0]!;
    const merge = async (...s: (Snapshot | null)[]) => (await mergeExec.run(mergeOp(s.length), s.map((snapshot) => ({ snapshot })), env.ctx))[0]!;

    it('merge(A, diff(A, B)) == B when B is built on A', async () => {
      const a = await makeSnapshot(env.ctx, fillA);
      const b = await makeSnapshot(env.ctx, changeToB, a);
      const d = await diff(a, b);
      expect(await dumpTree(await merge(a, d))).toEqual(await dumpTree(b));
    });

    it('merge(A, diff(A, B)) == B when B is unrelated to A', async () => {
      const a = await makeSnapshot(env.ctx, async (dir) => {
        await fillA(dir);
        await settleTimes(dir);
      });
      const b = await makeSnapshot(env.ctx, async (dir) => {
        await fillA(dir);
        await changeToB(dir);
        await settleTimes(dir);
      });
      const d = await diff(a, b);
      const merged = await merge(a, d);
      expect(await dumpTree(merged)).toEqual(await dumpTree(b));
      // The diff holds only the changes: unchanged files are not in it.
      const layerTree = Object.keys(await dumpDir(d!.layerPath()));
      expect(layerTree).not.toContain('dir/keep.txt');
      expect(layerTree).toContain('dir/change.txt');
      expect(layerTree).toContain('gone.txt'); // a whiteout
    });

    it('edge cases: scratch lower, identical inputs, scratch upper; merge of scratch', async () => {
      const a = await makeSnapshot(env.ctx, fillA);
      expect(await diff(null, a)).toBe(a);
      expect(await diff(a, a)).toBeNull();
      const deletion = await diff(a, null);
      expect(await dumpTree(await merge(a, deletion))).toEqual({});
      expect(await merge(null, null)).toBeNull();
      expect(await merge(null, a, null)).toBe(a);
    });

    it('property: merge(A, diff(A, B)) == B for random trees', async () => {
      const name = fc.constantFrom('a', 'b', 'c', 'd');
      const entry = fc.record({
        path: fc.array(name, { minLength: 1, maxLength: 3 }).map((p) => p.join('/')),
        kind: fc.constantFrom('file', 'dir', 'link'),
        content: fc.constantFrom('x', 'y', 'zz'),
        mode: fc.constantFrom(0o644, 0o600, 0o755),
      });
      const treeArb = fc.array(entry, { maxLength: 8 });
      const build = (entries: { path: string; kind: string; content: string; mode: number }[]) => async (d: string) => {
        for (const e of entries) {
          const p = path.join(d, e.path);
          await rm(p, { recursive: true, force: true }).catch(() => {});
          try {
            await mkdir(path.dirname(p), { recursive: true });
          } catch {
            continue; // a file is in the way of the parent: skip this entry
          }
          if (e.kind === 'dir') await mkdir(p);
          else if (e.kind === 'link') await symlink(e.content, p);
          else await writeFile(p, e.content);
          if (e.kind !== 'link') await chmod(p, e.mode);
        }
      };
      await fc.assert(
        fc.asyncProperty(treeArb, treeArb, async (ea, eb) => {
          const a = await makeSnapshot(env.ctx, build(ea));
          const b = await makeSnapshot(env.ctx, build(eb), a);
          const merged = await merge(a, await diff(a, b));
          expect(await dumpTree(merged)).toEqual(await dumpTree(b));
        }),
        { numRuns: 12 },
      );
    });
  });
}
