/**
 * What failed exec steps keep for debugging (their mounts as the process
 * left them) is removed when the build is over, whichever error ends the
 * build: steps failing in parallel (only the first is the build's error), a
 * build function that handles a failed solve and succeeds. The exec
 * executor is a fake (no runc) that fails as the runc worker does.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { BktError, withFailedExec, type BktPlugin, type BuildContext, type OpExecutor, type OpInput } from '@bkt/core';
import { DefBuilder, solverPerTest } from './graphs.test-util.js';
import { builtinOpsPlugin } from './ops/index.js';

const perTest = solverPerTest('bkt-failed-exec-');

/**
 * `exec` ops writing args[1] to /out in a new snapshot. args[0] `fail`: each
 * waits until `failing` of them are writing, then fails keeping its tree
 * (so parallel steps all fail before the build is cancelled); `ok` succeeds.
 */
function fakeExec(failing: number, kept: string[]): BktPlugin {
  let writing = 0;
  let all!: () => void;
  const allWriting = new Promise<void>((resolve) => (all = resolve));
  const executor: OpExecutor<pb.ExecOp> = {
    kind: 'exec',
    async run(op, inputs: OpInput[], ctx: BuildContext) {
      const [what, text] = op.meta!.args;
      const mutable = await ctx.snapshotter.prepare(inputs[0]?.snapshot ?? null);
      await writeFile(join(mutable.path, 'out'), text!);
      if (what !== 'fail') return [await mutable.commit()];
      if (++writing === failing) all();
      await allWriting;
      const tree = await mutable.commit();
      kept.push(tree.id);
      throw withFailedExec(new BktError('EXEC_FAILED', `process "fail ${text}" did not complete successfully: exit code: 1`, { opDigest: ctx.vertex!.digest }), {
        opDigest: ctx.vertex!.digest,
        name: ctx.vertex!.name,
        op,
        inputs: inputs.map((i) => i.snapshot),
        mounts: [tree],
      });
    },
  };
  return { name: 'fake-exec', opExecutors: [executor] };
}

function exec(g: DefBuilder, what: 'ok' | 'fail', text: string): string {
  return g.add({ op: { $case: 'exec', value: pb.ExecOp.fromPartial({ meta: { args: [what, text] }, mounts: [{ input: -1, dest: '/', output: 0 }] }) } });
}

async function expectGone(ids: string[]): Promise<void> {
  const usage = await (await perTest.open([])).diskUsage();
  for (const id of ids) {
    expect(existsSync(join(perTest.root, 'snapshots', id)), id).toBe(false);
    expect(usage.some((u) => u.id === id), id).toBe(false);
  }
}

it('two steps failing in parallel: neither kept tree is left in the store', async () => {
  const kept: string[] = [];
  const s = await perTest.open([fakeExec(2, kept), builtinOpsPlugin()]);
  const g = new DefBuilder();
  const a = exec(g, 'fail', 'stage-a');
  const b = exec(g, 'fail', 'stage-b');
  const merged = g.add({ inputs: [{ digest: a, index: 0 }, { digest: b, index: 0 }], op: { $case: 'merge', value: { inputs: [{ input: 0 }, { input: 1 }] } } });
  await expect(s.solve({ definition: g.build(merged) })).rejects.toMatchObject({ code: 'EXEC_FAILED' });
  expect(kept).toHaveLength(2);
  await s.close();
  await expectGone(kept);
});

it('a build function failing with its own error after a failed solve: the failed step kept nothing', async () => {
  const kept: string[] = [];
  const s = await perTest.open([fakeExec(1, kept)]);
  const failing = new DefBuilder();
  const failingDef = failing.build(exec(failing, 'fail', 'handled'));
  // As a gateway frontend's returned error: the build's error, carrying no failed step.
  const own = new BktError('INTERNAL', 'the frontend gave up');
  const err = await s
    .solve({
      build: async (bridge) => {
        await expect(bridge.solve(failingDef)).rejects.toMatchObject({ code: 'EXEC_FAILED' });
        throw own;
      },
    })
    .catch((e: unknown) => e);
  expect(err).toBe(own);
  expect(kept).toHaveLength(1);
  await s.close();
  await expectGone(kept);
});
