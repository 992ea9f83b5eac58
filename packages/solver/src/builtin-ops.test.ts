/** The solver with the real built-in ops (file, merge, diff): the cache behaviour a user sees. */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { createBkt } from '@bkt/core';
import { openSolver } from './solver.js';
import type { Solver } from './api.js';
import { builtinOpsPlugin } from './ops/index.js';
import { DefBuilder, counters, testPlugin } from './graphs.test-util.js';

let root: string;
let ctxDir: string;
let solver: Solver;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-solver-ops-'));
  ctxDir = await mkdtemp(join(tmpdir(), 'bkt-ctx-'));
  await writeFile(join(ctxDir, 'hello.txt'), 'hello');
  await writeFile(join(ctxDir, 'other.txt'), 'other');
});

afterEach(async () => {
  await solver.close();
  await rm(root, { recursive: true, force: true });
  await rm(ctxDir, { recursive: true, force: true });
});

function fileAction(a: Partial<pb.FileAction>): pb.FileAction {
  return pb.FileAction.fromPartial({ secondaryInput: -1, output: -1, ...a });
}

/** mkdir /out, copy hello.txt into it, mkfile /out/stamp; merged with a second tree; diffed against the base. */
function helloGraph(): Uint8Array {
  const g = new DefBuilder();
  const src = g.source('test://context');
  const base = g.add({
    op: {
      $case: 'file',
      value: {
        actions: [
          fileAction({ input: -1, output: -1, action: { $case: 'mkdir', value: pb.FileActionMkDir.fromPartial({ path: '/out', mode: 0o755, makeParents: true, timestamp: -1 }) } }),
          fileAction({ input: 0, output: 0, action: { $case: 'mkfile', value: pb.FileActionMkFile.fromPartial({ path: '/out/stamp', mode: 0o644, data: Buffer.from('v1'), timestamp: -1 }) } }),
        ],
      },
    },
  });
  const copied = g.add({
    inputs: [{ digest: base, index: 0 }, { digest: src, index: 0 }],
    op: {
      $case: 'file',
      value: {
        actions: [
          fileAction({ input: 0, secondaryInput: 1, output: 0, action: { $case: 'copy', value: pb.FileActionCopy.fromPartial({ src: '/hello.txt', dest: '/out/hello.txt', mode: -1, timestamp: -1 }) } }),
        ],
      },
    },
  });
  const diff = g.add({ inputs: [{ digest: base, index: 0 }, { digest: copied, index: 0 }], op: { $case: 'diff', value: { lower: { input: 0 }, upper: { input: 1 } } } });
  const extra = g.mkfile(null, { '/extra': 'x' });
  const merged = g.add({ inputs: [{ digest: extra, index: 0 }, { digest: diff, index: 0 }], op: { $case: 'merge', value: { inputs: [{ input: 0 }, { input: 1 }] } } });
  return g.build(merged);
}

it('builds mkdir/mkfile/copy/diff/merge, re-solves fully cached, and re-runs only what reads a changed file', async () => {
  const c = counters();
  const test = testPlugin({ counters: c });
  // Only the test source; the ops are the real ones.
  const bkt = await createBkt([{ ...test, opExecutors: [] }, builtinOpsPlugin()]);
  solver = await openSolver({ root, bkt });
  const def = helloGraph();
  const first = await solver.solve({ definition: def, localDirs: { context: ctxDir } });
  const m = await first.result.ref!.mount();
  expect((await readdir(m.path)).sort()).toEqual(['extra', 'out']);
  expect(await readdir(join(m.path, 'out'))).toEqual(['hello.txt']);
  expect(await readFile(join(m.path, 'out/hello.txt'), 'utf8')).toBe('hello');
  await m.release();

  const second = await solver.solve({ definition: def, localDirs: { context: ctxDir } });
  expect(second.stats.cached).toBe(second.stats.vertices);
  expect(second.stats.solverMs).toBeLessThan(300);

  await writeFile(join(ctxDir, 'other.txt'), 'changed, not copied');
  const third = await solver.solve({ definition: def, localDirs: { context: ctxDir } });
  expect(third.stats.vertices - third.stats.cached).toBe(1); // only the source
  expect(third.result.ref!.id).toBe(first.result.ref!.id);
});
