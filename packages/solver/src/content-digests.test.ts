/**
 * A copy's slow cache key takes the content digests a source's snapshot
 * already knows (`Snapshot.contentDigests`) instead of reading those files:
 * here a source whose bytes change on every resolve but which reports the
 * same digest — the copy's key stays the same, so the copy is a cache hit.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { createBkt, type BktPlugin, type Digest, type Snapshot, type Source } from '@bkt/core';
import { openSolver } from './solver.js';
import type { Solver } from './api.js';
import { DefBuilder, counters, testPlugin, treeOf } from './graphs.test-util.js';

let root: string;
let solver: Solver | undefined;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-solver-digests-'));
});
afterEach(async () => {
  await solver?.close();
  solver = undefined;
  await rm(root, { recursive: true, force: true });
});

/** `known://x`: a new key and new bytes of a.txt on every resolve (same length); its snapshot reports `reported` as a.txt's digest. */
function knownDigestsSource(reported: Digest): BktPlugin {
  let resolves = 0;
  const source: Source = {
    schemes: ['known'],
    identify: (scheme, ref, attrs, platform) => ({ scheme, ref, attrs, platform }),
    async resolve() {
      const n = ++resolves;
      return {
        cacheKey: async () => ({ key: `sha256:${createHash('sha256').update(`resolve ${n}`).digest('hex')}` }),
        async snapshot(ctx): Promise<Snapshot> {
          const mut = await ctx.snapshotter.prepare(null);
          await writeFile(join(mut.path, 'a.txt'), `bytes ${n}`);
          const snap = await mut.commit();
          return { id: snap.id, parent: snap.parent, mount: () => snap.mount(), layerPath: () => snap.layerPath(), contentDigests: () => new Map([['a.txt', reported]]) };
        },
      };
    },
  };
  return { name: 'known-digests', sources: [source] };
}

it("keys a copy on the digests its source's snapshot knows, reading none of those files", async () => {
  const c = counters();
  solver = await openSolver({ root, bkt: await createBkt([testPlugin({ counters: c }), knownDigestsSource(`sha256:${'ab'.repeat(32)}`)]) });
  const g = new DefBuilder();
  const copy = g.copy(null, g.source('known://x'), '/a.txt', '/a.txt');
  const def = g.build(copy);

  const first = await solver.solve({ definition: def });
  expect(await treeOf(first.result.ref)).toEqual({ 'a.txt': 'bytes 1' });
  expect(c.runs.get('file')).toBe(1);
  // The source's key changed (its fast key misses) and its bytes changed, but the digest it knows did not:
  // the copy's slow key is the same, so it is not run again.
  const second = await solver.solve({ definition: def });
  expect(c.runs.get('file')).toBe(1);
  expect(await treeOf(second.result.ref)).toEqual({ 'a.txt': 'bytes 1' });
});
