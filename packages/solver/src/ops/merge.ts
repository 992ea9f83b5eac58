/**
 * MergeOp (op kind `merge`): the inputs' trees stacked in order, later ones
 * winning, deletions recorded in an input's layers (e.g. a DiffOp's
 * whiteouts) applied. Scratch inputs are skipped; all scratch gives scratch;
 * a single remaining input is returned as is (as BuildKit does).
 */
import { BktError, type BuildContext, type OpExecutor, type OpInput, type Snapshot } from '@bkt/core';
import type * as pb from '@bkt/api/pb';

export function createMergeOpExecutor(): OpExecutor<pb.MergeOp> {
  return {
    kind: 'merge',
    async run(merge: pb.MergeOp, inputs: OpInput[], ctx: BuildContext): Promise<(Snapshot | null)[]> {
      if (merge.inputs.length === 0) throw new BktError('INVALID_DEFINITION', 'merge op has no inputs');
      const snapshots: Snapshot[] = [];
      for (const [k, mi] of merge.inputs.entries()) {
        if (mi.input < 0 || mi.input >= inputs.length) {
          throw new BktError('INVALID_DEFINITION', `merge input ${k}: index ${mi.input} out of range (${inputs.length} inputs)`);
        }
        const s = inputs[mi.input]!.snapshot;
        if (s) snapshots.push(s);
      }
      if (snapshots.length === 0) return [null];
      if (snapshots.length === 1) return [snapshots[0]!];
      return [await ctx.snapshotter.merge(snapshots)];
    },
  };
}
