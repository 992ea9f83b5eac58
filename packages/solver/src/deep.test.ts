import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createBkt, type BktPlugin, type OpExecutor } from '@bkt/core';
import { loadDefinition } from './definition.js';
import { openSolver } from './solver.js';
import type { Solver } from './api.js';
import { DefBuilder } from './graphs.test-util.js';

/**
 * Graphs deeper than the JavaScript call stack: loading, cache keys,
 * scheduling and progress walk them without recursion (a recursive walk
 * overflows at about 1,500 ops).
 */
const DEPTH = 10_000;

/** A chain of DEPTH file ops, each on the one before. */
function chain(): { def: Uint8Array; top: string } {
  const g = new DefBuilder();
  let top: string | null = null;
  for (let i = 0; i < DEPTH; i++) top = g.mkfile(top, { [`/f${i}`]: String(i) });
  return { def: g.build(top), top: top! };
}

/** File ops that produce an empty result without touching the store: what is measured is the solver's walk. */
function emptyFileOps(runs: { n: number }): BktPlugin {
  const exec: OpExecutor = {
    kind: 'file',
    async run() {
      runs.n++;
      return [null];
    },
  };
  return { name: 'bkt-plugin-empty-file-ops', opExecutors: [exec] };
}

let root: string | undefined;
let solver: Solver | undefined;
afterEach(async () => {
  await solver?.close();
  solver = undefined;
  if (root) await rm(root, { recursive: true, force: true });
});

describe('deep graphs', () => {
  it(`loads a chain of ${DEPTH} ops, inputs first`, () => {
    const { def, top } = chain();
    const loaded = loadDefinition(def);
    expect(loaded.vertices).toHaveLength(DEPTH);
    expect(loaded.vertices[0].inputs).toEqual([]);
    expect(loaded.result?.vertex.digest).toBe(top);
  });

  it(`solves a chain of ${DEPTH} ops (keys, scheduling, progress), then serves it from the cache`, async () => {
    root = await mkdtemp(join(tmpdir(), 'bkt-deep-'));
    const runs = { n: 0 };
    solver = await openSolver({ root, bkt: await createBkt([emptyFileOps(runs)]) });
    const { def } = chain();
    let vertexEvents = 0;
    const first = await solver.solve({ definition: def, onProgress: (e) => void (e.type === 'vertex' && vertexEvents++) });
    expect(runs.n).toBe(DEPTH);
    expect(first.stats).toMatchObject({ vertices: DEPTH, cached: 0 });
    expect(vertexEvents).toBe(2 * DEPTH);
    const again = await solver.solve({ definition: def });
    expect(runs.n).toBe(DEPTH);
    expect(again.stats).toMatchObject({ vertices: DEPTH, cached: DEPTH });
  }, 120_000);
});
