/**
 * A DiffOp result is a base layer holding overlay whiteouts. Its view (and
 * every view built on it) must show a tree, never a 0/0 character device,
 * while `layerPath()` keeps the raw layer. Real diff, merge and file ops.
 */
import { lstat, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { createBkt, type Snapshot } from '@bkt/core';
import type { Solver } from './api.js';
import { builtinOpsPlugin } from './ops/index.js';
import { openSolver } from './solver.js';
import { DefBuilder } from './graphs.test-util.js';
import { mountsUnder } from '@bkt/fsutil';

/** Every entry under `dir` as `path type` (d, f, l, or `c maj:min` for character devices), sorted. */
async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const name of await readdir(join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(join(dir, r)); // throws ENOENT for a whiteout overlayfs lists but hides
      if (st.isDirectory()) {
        out.push(`${r} d`);
        await walk(r);
      } else if (st.isCharacterDevice()) out.push(`${r} c ${st.rdev}`);
      else out.push(`${r} ${st.isSymbolicLink() ? 'l' : 'f'}`);
    }
  };
  await walk('');
  return out.sort();
}

async function treeOf(s: Snapshot | null): Promise<string[]> {
  if (!s) return [];
  const m = await s.mount();
  try {
    return await listTree(m.path);
  } finally {
    await m.release();
  }
}

const rmAction = (input: number, path: string, output = -1) =>
  pb.FileAction.fromPartial({ input, secondaryInput: -1, output, action: { $case: 'rm', value: { path, allowNotFound: false, allowWildcard: false } } });
const mkfileAction = (input: number, path: string, data: string, output = -1) =>
  pb.FileAction.fromPartial({
    input,
    secondaryInput: -1,
    output,
    action: { $case: 'mkfile', value: pb.FileActionMkFile.fromPartial({ path, mode: 0o644, data: Buffer.from(data), timestamp: -1 }) },
  });

/** A = /d/{keep,gone}, /top-gone; B = A without d/gone and top-gone, with d/new; D = diff(A, B). */
function graph() {
  const g = new DefBuilder();
  const a = g.mkfile(g.mkdir(null, '/d'), { '/d/keep': 'k', '/d/gone': 'g', '/top-gone': 't' });
  const b = g.add({
    inputs: [{ digest: a, index: 0 }],
    op: { $case: 'file', value: { actions: [rmAction(0, '/d/gone'), rmAction(1, '/top-gone'), mkfileAction(2, '/d/new', 'n', 0)] } },
  });
  const d = g.add({ inputs: [{ digest: a, index: 0 }, { digest: b, index: 0 }], op: { $case: 'diff', value: { lower: { input: 0 }, upper: { input: 1 } } } });
  const merge = (...xs: string[]) =>
    g.add({ inputs: xs.map((digest) => ({ digest, index: 0 })), op: { $case: 'merge', value: { inputs: xs.map((_, input) => ({ input })) } } });
  return { g, a, b, d, merge };
}

for (const kind of ['overlay', 'copy'] as const) {
  describe(`views of a diff result (${kind} snapshotter)`, () => {
    let root: string;
    let solver: Solver;

    afterEach(async () => {
      await solver.close();
      expect(await mountsUnder(root)).toEqual([]);
      await rm(root, { recursive: true, force: true });
    });

    async function solve(g: DefBuilder, digest: string): Promise<Snapshot | null> {
      return (await solver.solve({ definition: g.build(digest) })).result.ref;
    }

    it('shows the tree (whiteouts applied to nothing) while layerPath() keeps the whiteouts', async () => {
      root = await mkdtemp(join(tmpdir(), 'bkt-wh-'));
      solver = await openSolver({ root, bkt: await createBkt([builtinOpsPlugin()]), snapshotter: kind });
      const { g, d } = graph();
      const diff = (await solve(g, d))!;
      expect(diff.parent).toBeNull();
      expect(await treeOf(diff)).toEqual(['d d', 'd/new f']);
      expect(await listTree(diff.layerPath())).toEqual(['d d', 'd/gone c 0', 'd/new f', 'top-gone c 0']);
    });

    it('hides the whiteouts in a snapshot built on it, and in a merge onto a tree lacking their directories', async () => {
      root = await mkdtemp(join(tmpdir(), 'bkt-wh-'));
      solver = await openSolver({ root, bkt: await createBkt([builtinOpsPlugin()]), snapshotter: kind });
      const { g, a, d, merge } = graph();

      const child = g.mkfile(d, { '/d/extra': 'e' });
      const childSnap = (await solve(g, child))!;
      expect(await treeOf(childSnap)).toEqual(['d d', 'd/extra f', 'd/new f']);
      const m = await childSnap.mount();
      expect(await readFile(join(m.path, 'd/new'), 'utf8')).toBe('n');
      await m.release();

      // /c has no /d: the layer's d/gone deletes nothing there.
      const other = g.mkfile(null, { '/c': 'c' });
      expect(await treeOf(await solve(g, merge(other, d)))).toEqual(['c f', 'd d', 'd/new f']);

      // On A, the whiteouts apply: merge(A, diff(A, B)) has B's tree.
      expect(await treeOf(await solve(g, merge(a, d)))).toEqual(['d d', 'd/keep f', 'd/new f']);

      // The diff first, then a tree: the diff's view is the bottom of the chain.
      expect(await treeOf(await solve(g, merge(d, other)))).toEqual(['c f', 'd d', 'd/new f']);
    });
  });
}
