/**
 * Which step a failure is shown on: only the step that failed carries its
 * error; the steps its build stops because of it (running branches, image
 * config lookups, sources still resolving) end CANCELED, and every step
 * shown as started is completed exactly once.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { BktError, type BktPlugin, type BuildContext, type Frontend, type ProgressEvent, type Source, type VertexEvent } from '@bkt/core';
import { DefBuilder, sleep, solverPerTest } from './graphs.test-util.js';
import { CANCELED_ERROR } from './progress.js';

const perTest = solverPerTest('bkt-failure-progress-');
const open = perTest.open;

/** `exec` ops whose args are `[sleep|fail, ms]`: wait `ms`, then succeed or fail with "step failed: exit code 3". */
const timedExec: BktPlugin = {
  name: 'timed-exec',
  opExecutors: [
    {
      kind: 'exec',
      async run(op: pb.ExecOp, _inputs, ctx: BuildContext) {
        const [what, ms] = op.meta!.args;
        ctx.progress.log(1, `${what} for ${ms}ms\n`);
        await sleep(Number(ms), ctx.signal);
        if (what === 'fail') throw new BktError('EXEC_FAILED', 'step failed: exit code 3');
        return [null];
      },
    },
    { kind: 'merge', run: async () => [null] },
  ],
};

function exec(g: DefBuilder, what: 'sleep' | 'fail', ms: number): string {
  return g.add(
    { op: { $case: 'exec', value: pb.ExecOp.fromPartial({ meta: { args: [what, String(ms)] }, mounts: [{ input: -1, dest: '/', output: 0 }] }) } },
    { description: { 'llb.customname': `${what} ${ms}` } },
  );
}

/** The last event of each vertex, by name. */
function lastStates(events: ProgressEvent[]): Map<string, VertexEvent> {
  const out = new Map<string, VertexEvent>();
  for (const e of events) if (e.type === 'vertex') out.set(e.vertex.name, e.vertex);
  return out;
}

/** How many completion events each vertex got, by name. */
function completions(events: ProgressEvent[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of events) if (e.type === 'vertex' && e.vertex.completed) out.set(e.vertex.name, (out.get(e.vertex.name) ?? 0) + 1);
  return out;
}

it('a failing branch is the only error: the parallel branch it stops is CANCELED', async () => {
  const s = await open([timedExec]);
  const g = new DefBuilder();
  const failing = exec(g, 'fail', 50);
  const slow = exec(g, 'sleep', 5000);
  const merged = g.add({ inputs: [{ digest: failing, index: 0 }, { digest: slow, index: 0 }], op: { $case: 'merge', value: { inputs: [{ input: 0 }, { input: 1 }] } } });
  const events: ProgressEvent[] = [];
  const started = Date.now();
  const err = await s.solve({ definition: g.build(merged), onProgress: (e) => events.push(e) }).catch((e: unknown) => e);
  expect(Date.now() - started).toBeLessThan(4000);
  expect((err as Error).message).toContain('step failed: exit code 3');

  const states = lastStates(events);
  expect(states.get('fail 50')?.error).toContain('step failed: exit code 3');
  expect(states.get('sleep 5000')?.error).toBe(CANCELED_ERROR);
  expect(states.get('sleep 5000')?.completed).toBeDefined();
  const errors = [...states.values()].filter((v) => v.error && v.error !== CANCELED_ERROR).map((v) => v.name);
  expect(errors).toEqual(['fail 50']);
  for (const [name, n] of completions(events)) expect(n, name).toBe(1);
});

it("an image config lookup stopped by another lookup's failure is CANCELED, not given that failure", async () => {
  const imageSource: Source & { resolveImageConfig: (ref: string, opts: unknown, ctx: BuildContext) => Promise<{ digest: string; config: Uint8Array }> } = {
    schemes: ['docker-image'],
    identify: (scheme, ref, attrs, platform) => ({ scheme, ref, attrs, platform }),
    resolve: async () => {
      throw new BktError('UNIMPLEMENTED', 'not used here');
    },
    async resolveImageConfig(ref, _opts, ctx) {
      if (ref === 'missing') {
        await sleep(30, ctx.signal);
        throw new BktError('NOT_FOUND', 'missing: no such image');
      }
      await sleep(5000, ctx.signal);
      return { digest: `sha256:${'12'.repeat(32)}`, config: new Uint8Array() };
    },
  };
  const frontend: Frontend = {
    name: 'test.v0',
    async solve(_attrs, bridge) {
      await Promise.all([bridge.resolveImageConfig!('slow'), bridge.resolveImageConfig!('missing')]);
      return { ref: null, metadata: {} };
    },
  };
  const s = await open([{ name: 'image', sources: [imageSource], frontends: [frontend] }]);
  const events: ProgressEvent[] = [];
  const err = await s.solve({ frontend: 'test.v0', onProgress: (e) => events.push(e) }).catch((e: unknown) => e);
  expect((err as Error).message).toContain('missing: no such image');
  const states = lastStates(events);
  expect(states.get('[internal] load metadata for missing')?.error).toContain('missing: no such image');
  expect(states.get('[internal] load metadata for slow')?.error).toBe(CANCELED_ERROR);
  for (const [name, n] of completions(events)) expect(n, name).toBe(1);
});

it('a source that fails while resolving completes its shown step with its own error', async () => {
  const failingSource: Source = {
    schemes: ['flaky'],
    identify: (scheme, ref, attrs, platform) => ({ scheme, ref, attrs, platform }),
    async resolve(_id, ctx) {
      ctx.progress.log(1, 'resolving\n');
      throw new BktError('NOT_FOUND', 'flaky: registry unreachable');
    },
  };
  const s = await open([{ name: 'flaky', sources: [failingSource] }, timedExec]);
  const g = new DefBuilder();
  const src = g.source('flaky://thing');
  const slow = exec(g, 'sleep', 5000);
  const merged = g.add({ inputs: [{ digest: src, index: 0 }, { digest: slow, index: 0 }], op: { $case: 'merge', value: { inputs: [{ input: 0 }, { input: 1 }] } } });
  const events: ProgressEvent[] = [];
  const err = await s.solve({ definition: g.build(merged), onProgress: (e) => events.push(e) }).catch((e: unknown) => e);
  expect((err as Error).message).toContain('flaky: registry unreachable');
  const states = lastStates(events);
  expect(states.get('flaky://thing')?.error).toContain('flaky: registry unreachable');
  expect(states.get('flaky://thing')?.completed).toBeDefined();
  // Every step shown as started is completed.
  for (const v of states.values()) expect(v.completed, v.name).toBeDefined();
  for (const [name, n] of completions(events)) expect(n, name).toBe(1);
});

it('a step whose cache key fails by itself (a checksum of a missing file it copies) is shown failed; its input is not', async () => {
  const { testPlugin } = await import('./graphs.test-util.js');
  const ctx = await mkdtemp(join(tmpdir(), 'bkt-failure-ctx-'));
  try {
    const s = await open([testPlugin()]);
    const g = new DefBuilder();
    const src = g.source('test://context');
    const copy = g.copy(null, src, '/missing.txt', '/missing.txt');
    const events: ProgressEvent[] = [];
    const err = await s.solve({ definition: g.build(copy), localDirs: { context: ctx }, onProgress: (e) => events.push(e) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    const states = lastStates(events);
    const failed = [...states.values()].filter((v) => v.error);
    expect(failed.map((v) => v.name)).toEqual(['copy /missing.txt /missing.txt']);
    expect(failed[0]!.started).toBeDefined();
    expect(failed[0]!.completed).toBeDefined();
    expect(failed[0]!.error).not.toBe(CANCELED_ERROR);
    for (const [name, n] of completions(events)) expect(n, name).toBe(1);
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
});
