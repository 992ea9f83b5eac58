/**
 * Matching cache imports: an imported result is used only when the records of
 * all of a step's outputs agree on the canonical key downstream keys are
 * built from (one export's records), never a mix of exports' records.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import type { BktPlugin, CacheImport, Digest, OpExecutor } from '@bkt/core';
import { DefBuilder, solverPerTest } from './graphs.test-util.js';

const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}` as Digest;

/** A file op of two outputs (each an empty result), counting its runs; a cache backend `fake` whose import answers every key with `lookup`. */
function plugin(runs: { n: number }, lookup: CacheImport['lookup']): BktPlugin {
  const file: OpExecutor<pb.FileOp> = {
    kind: 'file',
    async run() {
      runs.n++;
      return [null, null];
    },
  };
  return {
    name: 'cache-import-test',
    opExecutors: [file],
    cacheBackends: [{ type: 'fake', importer: async () => ({ load: async () => ({ description: 'fake', lookup }) }) }],
  };
}

function twoOutputs(): Uint8Array {
  const g = new DefBuilder();
  const mk = (path: string, output: number) =>
    pb.FileAction.fromPartial({ input: -1, secondaryInput: -1, output, action: { $case: 'mkfile', value: pb.FileActionMkFile.fromPartial({ path, mode: 0o644, data: Buffer.from(path), timestamp: -1 }) } });
  const op = g.add({ op: { $case: 'file', value: { actions: [mk('/a', 0), mk('/b', 1)] } } });
  return g.build(op, 1);
}

describe('cache import matching', () => {
  const t = solverPerTest('bkt-cache-import-');

  it("uses a step's imported results when its outputs' records agree on the canonical key", async () => {
    const runs = { n: 0 };
    // One export's records: output i of a step whose canonical key is C is recorded with canonical outputKey(C, i).
    const s = await t.open([plugin(runs, (key) => ({ canonical: key, load: async () => null }))]);
    await s.solve({ definition: twoOutputs(), cacheImports: [{ type: 'fake', attrs: {} }] });
    expect(runs.n).toBe(0);
  });

  it('runs the step when its outputs\' records name different canonical keys (records of different exports)', async () => {
    const runs = { n: 0 };
    // Output 0's record stands for C_A, output 1's for a key that is not outputKey(C_A, 1).
    const s = await t.open([plugin(runs, (key) => ({ canonical: sha(`other:${key}`), load: async () => null }))]);
    await s.solve({ definition: twoOutputs(), cacheImports: [{ type: 'fake', attrs: {} }] });
    expect(runs.n).toBe(1);
  });
});
