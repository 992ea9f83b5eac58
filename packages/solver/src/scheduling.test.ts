/**
 * Scheduling (independent branches run concurrently, the default pool size)
 * and the frontend bridge (errors, warnings, image configs).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { BktError, isBktError, type BktPlugin, type BuildContext, type Digest, type Frontend, type Platform, type ProgressEvent, type Snapshot, type Source } from '@bkt/core';
import { createMergeOpExecutor } from './ops/merge.js';
import { defaultParallelism } from './pool.js';
import { DefBuilder, testPlugin, treeOf, sleep, solverPerTest } from './graphs.test-util.js';

const perTest = solverPerTest('bkt-sched-');
const open = perTest.open;

/** When one slow exec slept: from its start to its end (performance.now()). */
interface Span {
  start: number;
  end: number;
}

/**
 * An `exec` executor that sleeps `ms`, then writes `/out-<args[1]>` over its
 * rootfs input (scratch here: no mount to slow it down). Records each run's
 * name in `runs` and its sleep in `spans`.
 */
function slowExecPlugin(ms: number, runs: string[], spans: Span[] = []): BktPlugin {
  return {
    name: 'slow-exec',
    opExecutors: [
      {
        kind: 'exec',
        async run(op, inputs, ctx) {
          const args = (op as pb.ExecOp).meta!.args;
          runs.push(args[1]);
          const start = performance.now();
          await sleep(ms, ctx.signal);
          spans.push({ start, end: performance.now() });
          const mut = await ctx.snapshotter.prepare(inputs[0]?.snapshot ?? null);
          await writeFile(join(mut.path, `out-${args[1]}`), args[1]);
          return [await mut.commit()];
        },
      },
    ],
  };
}

/** Four independent branches: a slow exec each (over scratch). */
function branches(g: DefBuilder): string[] {
  return [1, 2, 3, 4].map((i) =>
    g.add({ op: { $case: 'exec', value: pb.ExecOp.fromPartial({ meta: { args: ['sleep', String(i)], cwd: '/' }, mounts: [{ input: -1, dest: '/', output: 0 }] }) } }),
  );
}

/** True when every span was running at one common instant (the last start precedes the first end). */
function allOverlap(spans: Span[]): boolean {
  return Math.max(...spans.map((x) => x.start)) < Math.min(...spans.map((x) => x.end));
}

describe('scheduling', () => {
  it('defaults to max(8, 2 × cores) op slots', () => {
    expect(defaultParallelism(1)).toBe(8);
    expect(defaultParallelism(2)).toBe(8);
    expect(defaultParallelism(6)).toBe(12);
  });

  it('runs independent branches copied one after another into a stage concurrently (as COPY --from=s1 … --from=s4)', async () => {
    const runs: string[] = [];
    const spans: Span[] = [];
    const s = await open([testPlugin(), slowExecPlugin(1000, runs, spans)]);
    const g = new DefBuilder();
    let top = g.mkfile(null, { '/base': 'base' });
    for (const [j, b] of branches(g).entries()) top = g.copy(top, b, `/out-${j + 1}`, `/r/${j + 1}`);
    const def = g.build(top);

    const t0 = performance.now();
    const r = await s.solve({ definition: def });
    const wall = performance.now() - t0;
    // The four sleeps ran at the same time (robust on a loaded machine), and the whole build took about one.
    expect(spans).toHaveLength(4);
    expect(allOverlap(spans)).toBe(true);
    expect(wall).toBeLessThan(1600);
    expect(runs.sort()).toEqual(['1', '2', '3', '4']);
    expect(await treeOf(r.result.ref)).toEqual({ base: 'base', 'r/1': '1', 'r/2': '2', 'r/3': '3', 'r/4': '4' });

    // Fully cached: nothing runs again, and nothing upstream of the hit is materialized.
    const again = await s.solve({ definition: def });
    expect(runs).toHaveLength(4);
    expect(again.stats.cached).toBe(again.stats.vertices);
  });

  it('runs independent branches merged into one op concurrently', async () => {
    const runs: string[] = [];
    const spans: Span[] = [];
    const s = await open([testPlugin(), slowExecPlugin(1000, runs, spans), { name: 'merge', opExecutors: [createMergeOpExecutor()] }]);
    const g = new DefBuilder();
    const bs = branches(g);
    const merged = g.add({ inputs: bs.map((d) => ({ digest: d, index: 0 })), op: { $case: 'merge', value: { inputs: bs.map((_, i) => ({ input: i })) } } });

    const t0 = performance.now();
    const r = await s.solve({ definition: g.build(merged) });
    const wall = performance.now() - t0;
    expect(spans).toHaveLength(4);
    expect(allOverlap(spans)).toBe(true);
    expect(wall).toBeLessThan(1600);
    expect(Object.keys(await treeOf(r.result.ref)).filter((f) => f.startsWith('out-')).sort()).toEqual(['out-1', 'out-2', 'out-3', 'out-4']);
  });
});

/** A frontend plugin running `solve` as frontend `test.v0`. */
function frontendPlugin(solve: Frontend['solve']): BktPlugin {
  return { name: 'test-frontend', frontends: [{ name: 'test.v0', solve }] };
}

describe('frontend bridge', () => {
  it("a failing build fails with the frontend's error when it annotates the vertex failure", async () => {
    let vertexError: unknown;
    const s = await open([
      testPlugin({ failPath: '/bad' }),
      frontendPlugin(async (_attrs, bridge) => {
        const g = new DefBuilder();
        try {
          return await bridge.solve(g.build(g.mkfile(g.mkfile(null, { '/ok': '1' }), { '/bad': 'x' })));
        } catch (err) {
          vertexError = err;
          const e = err as BktError;
          throw new BktError(e.code, `build.txt:3: ${e.message}\n   3 | WRITE /bad`, { ...e.details, file: 'build.txt', line: 3 }, { cause: err });
        }
      }),
    ]);
    const events: ProgressEvent[] = [];
    const err = await s.solve({ frontend: 'test.v0', onProgress: (e) => events.push(e) }).catch((e: unknown) => e);
    expect(isBktError(vertexError, 'INVALID_ARGUMENT')).toBe(true);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    const e = err as BktError;
    expect(e.message).toMatch(/^build\.txt:3: .*refusing to write \/bad/);
    expect(e.details).toMatchObject({ file: 'build.txt', line: 3, opDigest: (vertexError as BktError).details.opDigest });
    expect(e.cause).toBe(vertexError);
  });

  it('a frontend that only reports the cancellation after a failure gives way to the failure', async () => {
    const s = await open([
      testPlugin({ failPath: '/bad' }),
      frontendPlugin(async (_attrs, bridge) => {
        const g = new DefBuilder();
        await bridge.solve(g.build(g.mkfile(null, { '/bad': 'x' }))).catch(() => undefined);
        throw new BktError('CANCELLED', 'frontend gave up');
      }),
    ]);
    const err = await s.solve({ frontend: 'test.v0' }).catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as BktError).message).toMatch(/refusing to write \/bad/);
  });

  it('warnings carry url, ranges and level, and their vertex is shown before them', async () => {
    const fileVertex: Digest = `sha256:${'ab'.repeat(32)}`;
    const s = await open([
      testPlugin(),
      frontendPlugin(async (_attrs, bridge, ctx) => {
        ctx.progress.log(1, 'parsing\n');
        const ranges = [{ start: { line: 2, character: 0 }, end: { line: 2, character: 0 } }];
        bridge.warn(fileVertex, 'RuleName: something is off (line 2)', ['the rule explained'], { url: 'https://docs.example/rule', ranges, level: 2 });
        bridge.warn(fileVertex, 'second', undefined);
        return { ref: null, metadata: {} };
      }),
    ]);
    const events: ProgressEvent[] = [];
    await s.solve({ frontend: 'test.v0', onProgress: (e) => events.push(e) });
    const vertexAt = events.findIndex((e) => e.type === 'vertex' && e.vertex.digest === fileVertex);
    const warnings = events.flatMap((e, i) => (e.type === 'warning' ? [{ i, w: e.warning }] : []));
    expect(vertexAt).toBeGreaterThanOrEqual(0);
    expect(warnings).toHaveLength(2);
    expect(warnings[0].i).toBeGreaterThan(vertexAt);
    expect(warnings[0].w).toEqual({
      vertex: fileVertex,
      level: 2,
      short: 'RuleName: something is off (line 2)',
      detail: ['the rule explained'],
      url: 'https://docs.example/rule',
      ranges: [{ start: { line: 2, character: 0 }, end: { line: 2, character: 0 } }],
    });
    expect(warnings[1].w).toEqual({ vertex: fileVertex, level: 1, short: 'second', detail: [] });
    // The warned-on vertex is shown once; the frontend's own vertex is completed when it returns.
    expect(events.filter((e) => e.type === 'vertex' && e.vertex.digest === fileVertex && e.vertex.completed)).toHaveLength(1);
    const own = events.filter((e) => e.type === 'vertex' && e.vertex.name === '[frontend] test.v0');
    expect(own.map((e) => e.type === 'vertex' && Boolean(e.vertex.completed))).toEqual([false, true]);
  });

  it('resolveImageConfig asks the docker-image source, as its own progress vertex', async () => {
    const calls: { ref: string; opts: unknown }[] = [];
    const config = new TextEncoder().encode('{"architecture":"arm64","os":"linux","config":{}}');
    const imageSource: Source & { resolveImageConfig: (ref: string, opts: { platform?: Platform; resolveMode?: string }, ctx: BuildContext) => Promise<unknown> } = {
      schemes: ['docker-image'],
      identify: (scheme, ref, attrs, platform) => ({ scheme, ref, attrs, platform }),
      resolve: async () => {
        throw new BktError('UNIMPLEMENTED', 'not used here');
      },
      async resolveImageConfig(ref, opts) {
        calls.push({ ref, opts });
        return { ref: `docker.io/library/alpine:3@sha256:${'12'.repeat(32)}`, digest: `sha256:${'12'.repeat(32)}`, config };
      },
    };
    const arm64: Platform = { os: 'linux', architecture: 'arm64' };
    let got: unknown;
    let legacy: unknown;
    const s = await open([
      { name: 'image', sources: [imageSource] },
      frontendPlugin(async (_attrs, bridge) => {
        got = await bridge.resolveImageConfig!('docker.io/library/alpine:3', { platform: arm64, resolveMode: 'pull' });
        legacy = await bridge.resolveImageConfig!('docker.io/library/busybox:1', arm64);
        await bridge.resolveImageConfig!('docker.io/library/alpine:3', { resolveMode: 'sometimes' }).catch((e: unknown) => {
          expect(isBktError(e, 'INVALID_ARGUMENT')).toBe(true);
        });
        return { ref: null, metadata: {} };
      }),
    ]);
    const events: ProgressEvent[] = [];
    await s.solve({ frontend: 'test.v0', onProgress: (e) => events.push(e) });
    expect(got).toEqual({ ref: `docker.io/library/alpine:3@sha256:${'12'.repeat(32)}`, digest: `sha256:${'12'.repeat(32)}`, config });
    expect(legacy).toMatchObject({ digest: `sha256:${'12'.repeat(32)}` });
    expect(calls).toEqual([
      { ref: 'docker.io/library/alpine:3', opts: { platform: arm64, resolveMode: 'pull' } },
      { ref: 'docker.io/library/busybox:1', opts: { platform: arm64, resolveMode: 'default' } },
    ]);
    const names = events.flatMap((e) => (e.type === 'vertex' && e.vertex.completed ? [e.vertex.name] : []));
    expect(names).toContain('[internal] load metadata for docker.io/library/alpine:3 (linux/arm64)');
  });

  it('resolveImageConfig without a docker-image source is UNIMPLEMENTED', async () => {
    const s = await open([
      frontendPlugin(async (_attrs, bridge) => {
        await bridge.resolveImageConfig!('alpine');
        return { ref: null, metadata: {} };
      }),
    ]);
    const err = await s.solve({ frontend: 'test.v0' }).catch((e: unknown) => e);
    expect(isBktError(err, 'UNIMPLEMENTED')).toBe(true);
    expect((err as Error).message).toMatch(/docker-image source/);
  });
});
