/**
 * SolveRequest.debug: the build stays open while the callback runs — a
 * failed exec step's kept snapshots alive and offered as `failedExec`,
 * containers made through the exec executor's ContainerProvider and
 * released when the callback returns — and the failed step's kept state is
 * removed from the store afterwards. The exec executor is a fake (no runc).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import {
  BktError,
  withFailedExec,
  type BktPlugin,
  type BuildContext,
  type ContainerProvider,
  type InteractiveContainer,
  type NewContainerRequest,
  type OpExecutor,
  type OpInput,
} from '@bkt/core';
import { DefBuilder, solverPerTest } from './graphs.test-util.js';
import { failedStepTarget, resultTarget } from './debug.js';

const perTest = solverPerTest('bkt-debug-');

/** `exec` ops that write their args[1] to /out in a new snapshot, then fail (args[0] `fail`) keeping it, or succeed. */
function fakeExec(made: { requests: NewContainerRequest[]; released: number }): BktPlugin {
  const executor: OpExecutor<pb.ExecOp> & ContainerProvider<pb.Mount> = {
    kind: 'exec',
    async run(op, inputs: OpInput[], ctx: BuildContext) {
      const [what, text] = op.meta!.args;
      const mutable = await ctx.snapshotter.prepare(inputs[0]?.snapshot ?? null);
      const { writeFile } = await import('node:fs/promises');
      await writeFile(join(mutable.path, 'out'), text!);
      const kept = await mutable.commit();
      if (what === 'fail') {
        throw withFailedExec(new BktError('EXEC_FAILED', 'process "fail" did not complete successfully: exit code: 1', { opDigest: ctx.vertex!.digest }), {
          opDigest: ctx.vertex!.digest,
          name: ctx.vertex!.name,
          op,
          inputs: inputs.map((i) => i.snapshot),
          mounts: [kept],
        });
      }
      return [kept];
    },
    async newContainer(req, ctx): Promise<InteractiveContainer> {
      made.requests.push(req);
      expect(ctx.signal.aborted).toBe(false);
      return {
        id: `c${made.requests.length}`,
        processes: () => [],
        start: async () => {
          throw new BktError('UNIMPLEMENTED', 'a fake container runs nothing');
        },
        release: async () => {
          made.released++;
        },
      };
    },
  };
  return { name: 'fake-exec', opExecutors: [executor] };
}

function exec(g: DefBuilder, what: 'ok' | 'fail', text: string, cwd = '/'): string {
  return g.add(
    {
      op: {
        $case: 'exec',
        value: pb.ExecOp.fromPartial({ meta: { args: [what, text], env: ['A=1'], cwd, user: '1000' }, mounts: [{ input: -1, dest: '/', output: 0 }] }),
      },
    },
    { description: { 'llb.customname': `${what} ${text}` } },
  );
}

it('after a failed exec step: failedExec with its kept snapshot, a container over it, all released, the kept state removed', async () => {
  const made = { requests: [] as NewContainerRequest[], released: 0 };
  const s = await perTest.open([fakeExec(made)]);
  const g = new DefBuilder();
  const failing = exec(g, 'fail', 'left-by-the-step', '/work');
  let keptId = '';
  const err = await s
    .solve({
      definition: g.build(failing),
      debug: async (session) => {
        expect(session.result).toBeUndefined();
        expect(session.error?.message).toContain('exit code: 1');
        const failed = session.failedExec!;
        expect(failed.name).toBe('fail left-by-the-step');
        keptId = failed.mounts[0]!.id;
        // Alive while the session runs: mountable, its content as the step left it.
        const view = await failed.mounts[0]!.mount();
        const { readFile } = await import('node:fs/promises');
        expect(await readFile(join(view.path, 'out'), 'utf8')).toBe('left-by-the-step');
        await view.release();
        const target = failedStepTarget(failed);
        expect(target.process).toMatchObject({ args: ['/bin/sh'], env: ['A=1'], cwd: '/work', user: '1000', security: 'sandbox' });
        expect((target.request.mounts[0] as pb.Mount).input).toBe(failed.inputs.length);
        expect(target.request.inputs[failed.inputs.length]!.snapshot?.id).toBe(keptId);
        await session.newContainer(target.request);
        await session.newContainer(target.request);
        expect(made.released).toBe(0);
      },
    })
    .catch((e: unknown) => e);
  expect((err as Error).message).toContain('exit code: 1');
  expect(made.requests).toHaveLength(2);
  expect(made.released).toBe(2);
  // The failed step's kept state is gone once the build finished.
  expect(existsSync(join(perTest.root, 'snapshots', keptId))).toBe(false);
  expect((await s.diskUsage()).some((u) => u.id === keptId)).toBe(false);
});

it('after a successful build: the result, the exporter response, and a container over the result', async () => {
  const made = { requests: [] as NewContainerRequest[], released: 0 };
  const s = await perTest.open([fakeExec(made)]);
  const g = new DefBuilder();
  const step = exec(g, 'ok', 'in-the-result');
  let called = false;
  const res = await s.solve({
    definition: g.build(step),
    debug: async (session) => {
      called = true;
      expect(session.error).toBeUndefined();
      expect(session.exporterResponse).toEqual({});
      const target = resultTarget(session.result!)!;
      expect(target.request.inputs[0]!.snapshot?.id).toBe(session.result!.ref!.id);
      expect(target.process.args).toEqual(['/bin/sh']);
      await session.newContainer(target.request);
    },
  });
  expect(called).toBe(true);
  expect(res.result.ref).not.toBeNull();
  expect(made.released).toBe(1);
});

it('a failing debug callback fails a successful solve; without a ContainerProvider newContainer is UNIMPLEMENTED', async () => {
  const plain: BktPlugin = {
    name: 'plain-exec',
    opExecutors: [{ kind: 'exec', run: async () => [null] } satisfies OpExecutor<pb.ExecOp>],
  };
  const s = await perTest.open([plain]);
  const g = new DefBuilder();
  const step = exec(g, 'ok', 'x');
  const err = await s
    .solve({
      definition: g.build(step),
      debug: async (session) => {
        await session.newContainer({ mounts: [], inputs: [] });
      },
    })
    .catch((e: unknown) => e);
  expect(err).toBeInstanceOf(BktError);
  expect((err as BktError).code).toBe('UNIMPLEMENTED');
  expect((err as Error).message).toMatch(/interactive containers/);
});
