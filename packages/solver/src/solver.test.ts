import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { createBkt, isBktError, type Bkt, type BktPlugin, type OpEnvelope, type ProgressEvent, type Snapshot } from '@bkt/core';
import { openSolver } from './solver.js';
import type { Solver } from './api.js';
import { DefBuilder, counters, testPlugin, treeOf, type Counters } from './graphs.test-util.js';
import { mountsUnder } from '@bkt/fsutil';

let root: string;
let ctxDir: string;
let solver: Solver | undefined;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-solver-'));
  ctxDir = await mkdtemp(join(tmpdir(), 'bkt-ctx-'));
  await writeFile(join(ctxDir, 'a.txt'), 'A');
  await writeFile(join(ctxDir, 'b.txt'), 'B');
});

afterEach(async () => {
  await solver?.close();
  solver = undefined;
  expect(await mountsUnder(root)).toEqual([]);
  await rm(root, { recursive: true, force: true });
  await rm(ctxDir, { recursive: true, force: true });
});

async function open(plugins: BktPlugin[], extra: { maxParallelism?: number } = {}): Promise<{ s: Solver; bkt: Bkt }> {
  const bkt = await createBkt(plugins);
  solver = await openSolver({ root, bkt, ...extra });
  return { s: solver, bkt };
}


/** context → copy a.txt → mkfile on top: three vertices. */
function copyGraph(): { def: Uint8Array; copy: string; top: string; src: string } {
  const g = new DefBuilder();
  const src = g.source('test://context');
  const base = g.mkfile(null, { '/base': 'base' });
  const copy = g.copy(base, src, '/a.txt', '/app/a.txt');
  const top = g.mkfile(copy, { '/app/done': 'yes' }, { description: { 'llb.customname': 'finish the app' } });
  return { def: g.build(top), copy, top, src };
}

describe('solve', () => {
  it('builds a graph, then re-solves it entirely from the cache, fast', async () => {
    const c = counters();
    const { s } = await open([testPlugin({ counters: c })]);
    const { def } = copyGraph();
    const events: ProgressEvent[] = [];
    const first = await s.solve({ definition: def, localDirs: { context: ctxDir }, onProgress: (e) => events.push(e) });
    expect(await treeOf(first.result.ref)).toEqual({ base: 'base', 'app/a.txt': 'A', 'app/done': 'yes' });
    expect(first.stats).toMatchObject({ vertices: 4, cached: 0 });
    expect(c.total()).toBe(4);
    const names = events.filter((e) => e.type === 'vertex').map((e) => (e.type === 'vertex' ? e.vertex.name : ''));
    expect(new Set(names)).toEqual(new Set(['test://context', 'mkfile /base', 'copy /a.txt /app/a.txt', 'finish the app']));
    expect(events.some((e) => e.type === 'log' && new TextDecoder().decode(e.log.msg) === 'wrote /app/done\n')).toBe(true);

    const again: ProgressEvent[] = [];
    const second = await s.solve({ definition: def, localDirs: { context: ctxDir }, onProgress: (e) => again.push(e) });
    expect(c.total()).toBe(4);
    expect(second.stats).toMatchObject({ vertices: 4, cached: 4 });
    expect(second.stats.solverMs).toBeLessThan(300);
    expect(second.result.ref?.id).toBe(first.result.ref?.id);
    const vertexEvents = again.filter((e) => e.type === 'vertex');
    expect(vertexEvents).toHaveLength(4);
    expect(vertexEvents.every((e) => e.type === 'vertex' && e.vertex.cached)).toBe(true);
  });

  it('re-runs only the steps that read a changed file of the context', async () => {
    const c = counters();
    const { s } = await open([testPlugin({ counters: c })]);
    const { def } = copyGraph();
    await s.solve({ definition: def, localDirs: { context: ctxDir } });
    c.runs.clear();

    // b.txt is not copied: the source re-runs, the copy hits its content key, the rest is cached.
    await writeFile(join(ctxDir, 'b.txt'), 'B changed');
    const r1 = await s.solve({ definition: def, localDirs: { context: ctxDir } });
    expect(Object.fromEntries(c.runs)).toEqual({ 'source:context': 1 });
    expect(r1.stats.cached).toBe(3);

    // a.txt is copied: the copy and what follows re-run.
    c.runs.clear();
    await writeFile(join(ctxDir, 'a.txt'), 'A changed');
    const r2 = await s.solve({ definition: def, localDirs: { context: ctxDir } });
    expect(Object.fromEntries(c.runs)).toEqual({ 'source:context': 1, file: 2 });
    expect(await treeOf(r2.result.ref)).toMatchObject({ 'app/a.txt': 'A changed' });
  });

  it('noCache runs everything again; ignore_cache metadata re-runs one vertex', async () => {
    const c = counters();
    const { s } = await open([testPlugin({ counters: c })]);
    const { def } = copyGraph();
    await s.solve({ definition: def, localDirs: { context: ctxDir } });
    c.runs.clear();
    await s.solve({ definition: def, localDirs: { context: ctxDir }, noCache: true });
    expect(c.total()).toBe(4);

    c.runs.clear();
    const g = new DefBuilder();
    const a = g.mkfile(null, { '/x': 'x' });
    const b = g.mkfile(a, { '/y': 'y' }, { ignoreCache: true });
    const def2 = g.build(b);
    await s.solve({ definition: def2 });
    await s.solve({ definition: def2 });
    expect(c.runs.get('file')).toBe(3);
  });

  it('runs a vertex shared by two concurrent solves once', async () => {
    const c = counters();
    const { s } = await open([testPlugin({ counters: c, delayMs: 300 })]);
    const g1 = new DefBuilder();
    const shared1 = g1.mkfile(null, { '/shared': 's' });
    const def1 = g1.build(g1.mkfile(shared1, { '/one': '1' }));
    const g2 = new DefBuilder();
    const shared2 = g2.mkfile(null, { '/shared': 's' });
    const def2 = g2.build(g2.mkfile(shared2, { '/two': '2' }));
    expect(shared1).toBe(shared2);
    const [r1, r2] = await Promise.all([s.solve({ definition: def1 }), s.solve({ definition: def2 })]);
    expect(c.runs.get('file')).toBe(3);
    expect(await treeOf(r1.result.ref)).toEqual({ shared: 's', one: '1' });
    expect(await treeOf(r2.result.ref)).toEqual({ shared: 's', two: '2' });
  });

  it('bounds parallelism with maxParallelism', async () => {
    let running = 0;
    let peak = 0;
    const plugin = testPlugin({
      delayMs: 100,
      onRun: (ctx) => {
        running++;
        peak = Math.max(peak, running);
        ctx.signal.addEventListener('abort', () => undefined);
        setTimeout(() => running--, 100);
      },
    });
    const { s } = await open([plugin], { maxParallelism: 2 });
    const g = new DefBuilder();
    const leaves = [1, 2, 3, 4, 5].map((i) => g.mkfile(null, { [`/f${i}`]: String(i) }));
    const merged = g.add({ inputs: leaves.map((d) => ({ digest: d, index: 0 })), op: { $case: 'merge', value: { inputs: leaves.map((_, i) => ({ input: i })) } } });
    const mergePlugin: BktPlugin = {
      name: 'test-merge',
      opExecutors: [{ kind: 'merge', run: async (_op, inputs, ctx) => [await ctx.snapshotter.merge(inputs.map((i) => i.snapshot!))] }],
    };
    await solver!.close();
    const bkt = await createBkt([plugin, mergePlugin]);
    solver = await openSolver({ root, bkt, maxParallelism: 2 });
    const r = await solver.solve({ definition: g.build(merged) });
    expect(peak).toBe(2);
    expect(Object.keys(await treeOf(r.result.ref)).sort()).toEqual(['f1', 'f2', 'f3', 'f4', 'f5']);
    void s;
  });

  it('cancellation aborts the running ops and fails with CANCELLED', async () => {
    let sawAbort = false;
    const { s } = await open([testPlugin({ delayMs: 5000, onRun: (ctx) => ctx.signal.addEventListener('abort', () => (sawAbort = true)) })]);
    const g = new DefBuilder();
    const def = g.build(g.mkfile(null, { '/slow': 's' }));
    const ac = new AbortController();
    const p = s.solve({ definition: def, signal: ac.signal });
    let abortedAt = 0;
    setTimeout(() => {
      abortedAt = performance.now();
      ac.abort();
    }, 200);
    const err = await p.catch((e: unknown) => e);
    const afterAbort = performance.now() - abortedAt;
    expect(isBktError(err, 'CANCELLED')).toBe(true);
    expect(abortedAt).toBeGreaterThan(0); // failed because of the abort, not before it
    expect(afterAbort).toBeLessThan(2000); // measured from the abort call, not from the test's start
    expect(sawAbort).toBe(true);
  });

  it('a shared run survives the cancellation of one of the builds waiting for it', async () => {
    const c = counters();
    const { s } = await open([testPlugin({ counters: c, delayMs: 400 })]);
    const g = new DefBuilder();
    const def = g.build(g.mkfile(null, { '/x': 'x' }));
    const ac = new AbortController();
    const a = s.solve({ definition: def, signal: ac.signal });
    await new Promise((r) => setTimeout(r, 100));
    const b = s.solve({ definition: def });
    await new Promise((r) => setTimeout(r, 100));
    ac.abort();
    expect(isBktError(await a.catch((e: unknown) => e), 'CANCELLED')).toBe(true);
    expect(await treeOf((await b).result.ref)).toEqual({ x: 'x' });
    expect(c.runs.get('file')).toBe(1);
  });

  it('a failing vertex cancels the rest of its build and names the op', async () => {
    let slowAborted = false;
    const plugin = testPlugin({
      failPath: '/bad',
      delayMs: 50,
      onRun: (ctx) => ctx.signal.addEventListener('abort', () => (slowAborted = true)),
    });
    const { s } = await open([plugin]);
    const g = new DefBuilder();
    const bad = g.mkfile(null, { '/bad': 'x' });
    const slowA = g.mkfile(null, { '/slow': 's', '/slow2': 's' });
    const slow = g.mkfile(slowA, { '/slower': 's' });
    const merged = g.add({ inputs: [{ digest: bad, index: 0 }, { digest: slow, index: 0 }], op: { $case: 'merge', value: { inputs: [{ input: 0 }, { input: 1 }] } } });
    await solver!.close();
    solver = await openSolver({
      root,
      bkt: await createBkt([plugin, { name: 'm', opExecutors: [{ kind: 'merge', run: async (_o, i, ctx) => [await ctx.snapshotter.merge(i.map((x) => x.snapshot!))] }] }]),
    });
    const events: ProgressEvent[] = [];
    const err = await solver.solve({ definition: g.build(merged), onProgress: (e) => events.push(e) }).catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toContain('refusing to write /bad');
    expect((err as Error).message).toContain(bad);
    expect(slowAborted).toBe(true);
    const failed = events.find((e) => e.type === 'vertex' && e.vertex.digest === bad && e.vertex.error);
    expect(failed).toBeDefined();
    void s;
  });
});

describe('definition errors', () => {
  async function expectRejected(def: Uint8Array, code: string, ...parts: string[]) {
    const { s } = await open([testPlugin()]);
    const err = await s.solve({ definition: def }).catch((e: unknown) => e);
    expect(isBktError(err), String(err)).toBe(true);
    expect((err as { code: string }).code).toBe(code);
    for (const p of parts) expect((err as Error).message).toContain(p);
    expect(await readdir(join(root, 'snapshots'))).toEqual([]);
  }

  it('malformed protobuf', async () => {
    await expectRejected(new Uint8Array([0x0a, 0xff, 0xff, 0x01]), 'INVALID_DEFINITION', 'malformed');
  });

  it('input index out of range', async () => {
    const g = new DefBuilder();
    const a = g.mkfile(null, { '/a': 'a' });
    const b = g.add({ inputs: [{ digest: a, index: 3 }], op: { $case: 'file', value: { actions: [{ input: 0, secondaryInput: -1, output: 0, action: { $case: 'mkdir', value: { path: '/d', mode: 0o755, makeParents: false, owner: undefined, timestamp: -1 } } }] } } });
    await expectRejected(g.build(b), 'INVALID_DEFINITION', b, 'output 3');
  });

  it('missing input, bad action index, unknown kind', async () => {
    const g = new DefBuilder();
    const ghost = `sha256:${'ab'.repeat(32)}`;
    const b = g.mkfile(ghost, { '/x': 'x' });
    await expectRejected(g.build(b), 'INVALID_DEFINITION', b, ghost);
    await solver!.close();
    solver = undefined;

    const g2 = new DefBuilder();
    const c = g2.add({ op: { $case: 'file', value: { actions: [{ input: 4, secondaryInput: -1, output: 0, action: { $case: 'mkdir', value: { path: '/d', mode: 0o755, makeParents: false, owner: undefined, timestamp: -1 } } }] } } });
    await expectRejected(g2.build(c), 'INVALID_DEFINITION', c, 'action #0');
    await solver!.close();
    solver = undefined;

    const g3 = new DefBuilder();
    const d = g3.add({});
    await expectRejected(g3.build(d), 'INVALID_DEFINITION', d, 'unknown op kind');
  });

  it('an exec op without an exec executor', async () => {
    const g = new DefBuilder();
    const e = g.add({ op: { $case: 'exec', value: { meta: { args: ['/bin/true'], env: [], cwd: '/', user: '', proxyEnv: undefined, extraHosts: [], hostname: '', ulimit: [], cgroupParent: '', removeMountStubsRecursive: false, validExitCodes: [] }, mounts: [{ input: -1, selector: '', dest: '/', output: 0, readonly: false, mountType: 0, TmpfsOpt: undefined, cacheOpt: undefined, secretOpt: undefined, SSHOpt: undefined, resultID: '', contentCache: 0 }], network: 0, security: 0, secretenv: [] } } });
    await expectRejected(g.build(e), 'UNIMPLEMENTED', 'no executor for exec ops', '@bkt/worker-runc', e);
  });

  it('an executor registered under another kind is given no op of that kind: a PLUGIN error naming the op', async () => {
    let ran = 0;
    const misregistered: BktPlugin = {
      name: 'misregistered-merge',
      setup: ({ registries }) => registries.opExecutors.register('exec', { kind: 'merge', run: async () => (ran++, [null]) }, 'misregistered-merge'),
    };
    const { s } = await open([testPlugin(), misregistered]);
    const g = new DefBuilder();
    const e = g.add({ op: { $case: 'exec', value: pb.ExecOp.fromPartial({ meta: { args: ['/bin/true'] }, mounts: [{ input: -1, dest: '/', output: 0 }] }) } });
    const err = await s.solve({ definition: g.build(e) }).catch((x: unknown) => x);
    expect(isBktError(err, 'PLUGIN'), String(err)).toBe(true);
    expect((err as Error).message).toContain(e);
    expect((err as Error).message).toContain('is of kind exec, but the executor registered for exec ops by plugin misregistered-merge runs merge ops');
    expect((err as Error).message).toContain('misregistered-merge');
    expect((err as { details: { opDigest?: string } }).details.opDigest).toBe(e);
    expect(ran).toBe(0);
  });

  it("an executor is given the op's platform as its envelope, and none for an op without one", async () => {
    const envelopes: (OpEnvelope | undefined)[] = [];
    const recording: BktPlugin = {
      name: 'recording-exec',
      opExecutors: [{ kind: 'exec', run: async (_op, _inputs, _ctx, envelope) => (envelopes.push(envelope), [null]) }],
    };
    const { s } = await open([testPlugin(), recording]);
    const exec = (args: string[], platform?: Partial<pb.Platform>) => {
      const g = new DefBuilder();
      const value = pb.ExecOp.fromPartial({ meta: { args }, mounts: [{ input: -1, dest: '/', output: 0 }] });
      return g.build(g.add({ op: { $case: 'exec', value }, ...(platform ? { platform: pb.Platform.fromPartial(platform) } : {}) }));
    };
    await s.solve({ definition: exec(['/bin/arm'], { OS: 'linux', Architecture: 'arm', Variant: 'v6' }) });
    await s.solve({ definition: exec(['/bin/host']) });
    expect(envelopes).toEqual([{ platform: { os: 'linux', architecture: 'arm', variant: 'v6' } }, {}]);
  });

  it('an exec op asking for host networking without the entitlement', async () => {
    const g = new DefBuilder();
    const e = g.add({
      op: {
        $case: 'exec',
        value: pb.ExecOp.fromPartial({
          meta: { args: ['/bin/true'] },
          mounts: [{ input: -1, dest: '/', output: 0 }],
          network: pb.NetMode.HOST,
        }),
      },
    });
    let ran = 0;
    const execPlugin: BktPlugin = { name: 'fake-exec', opExecutors: [{ kind: 'exec', run: async () => (ran++, [null]) }] };
    const { s } = await open([testPlugin(), execPlugin]);
    const err = await s.solve({ definition: g.build(e) }).catch((x: unknown) => x);
    expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
    expect((err as Error).message).toContain('network.host');
    expect(ran).toBe(0);
    const ok = await s.solve({ definition: g.build(e), entitlements: ['network.host'] });
    expect(ok.result.ref).toBeNull();
    expect(ran).toBe(1);
  });

  it('a source scheme nobody registered, and a source denied by policy', async () => {
    const g = new DefBuilder();
    const src = g.source('git://example.com/repo.git');
    await expectRejected(g.build(src), 'UNIMPLEMENTED', 'git://', src);
    await solver!.close();
    solver = undefined;

    const policy: BktPlugin = {
      name: 'deny-all',
      setup: ({ hooks }) => {
        hooks.sourcePolicy.tapPromise('deny', async (req) => ({ action: 'deny', reason: `no ${req.identifier}` }));
      },
    };
    const bkt = await createBkt([testPlugin(), policy]);
    solver = await openSolver({ root, bkt });
    const g2 = new DefBuilder();
    const err = await solver.solve({ definition: g2.build(g2.source('test://context')), localDirs: { context: ctxDir } }).catch((e: unknown) => e);
    expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
  });

  it('an empty definition is an empty result', async () => {
    const { s } = await open([testPlugin()]);
    const r = await s.solve({ definition: new DefBuilder().build(null) });
    expect(r.result.ref).toBeNull();
  });
});

describe('cache records and usage', () => {
  it('a record whose snapshot vanished is a miss, and is removed', async () => {
    const c = counters();
    const { s } = await open([testPlugin({ counters: c })]);
    const g = new DefBuilder();
    const def = g.build(g.mkfile(null, { '/x': 'x' }));
    const r = await s.solve({ definition: def });
    await rm(join(root, 'snapshots', r.result.ref!.id), { recursive: true });
    const r2 = await s.solve({ definition: def });
    expect(c.runs.get('file')).toBe(2);
    expect(r2.result.ref!.id).not.toBe(r.result.ref!.id);
    expect(await treeOf(r2.result.ref)).toEqual({ x: 'x' });
  });

  it('diskUsage lists records; prune removes unused ones and their cache records', async () => {
    const c: Counters = counters();
    const { s } = await open([testPlugin({ counters: c })]);
    const { def } = copyGraph();
    await s.solve({ definition: def, localDirs: { context: ctxDir } });
    await s.solve({ definition: def, localDirs: { context: ctxDir } });
    const du = await s.diskUsage();
    // The snapshots, and each build's key plaintexts (for explanations).
    const snapshots = du.filter((r) => r.recordType !== 'build.keys');
    expect(snapshots.length).toBe(4);
    expect(du.filter((r) => r.recordType === 'build.keys')).toHaveLength(2);
    const top = snapshots.find((r) => r.parents.length === 1 && snapshots.every((o) => !o.parents.includes(r.id)))!;
    expect(top.usageCount).toBeGreaterThanOrEqual(1);
    expect(top.lastUsedAt).toBeInstanceOf(Date);
    expect(snapshots.every((r) => r.size > 0 && !r.inUse && !r.mutable && r.recordType === 'regular')).toBe(true);

    expect(await s.prune({ keepDuration: 60_000 })).toEqual([]);
    const removed = await s.prune();
    expect(removed.map((r) => r.id).sort()).toEqual(du.map((r) => r.id).sort());
    expect(await s.diskUsage()).toEqual([]);
    expect(await readdir(join(root, 'snapshots'))).toEqual([]);
    c.runs.clear();
    await s.solve({ definition: def, localDirs: { context: ctxDir } });
    expect(c.total()).toBe(4);
  });

  it('keepStorage removes least recently used records first', async () => {
    const { s } = await open([testPlugin()]);
    for (const name of ['one', 'two', 'three']) {
      const g = new DefBuilder();
      await s.solve({ definition: g.build(g.mkfile(null, { [`/${name}`]: name.repeat(5000) })) });
      await new Promise((r) => setTimeout(r, 5));
    }
    const du = await s.diskUsage();
    const total = du.reduce((n, r) => n + r.size, 0);
    const removed = await s.prune({ keepStorage: total - 1 });
    expect(removed).toHaveLength(1);
    expect(removed[0].createdAt.getTime()).toBe(Math.min(...du.map((r) => r.createdAt.getTime())));
  });
});

describe('frontends, exporters and hooks', () => {
  it('a frontend solves nested definitions; exporters receive the result; hooks fire in order', async () => {
    const order: string[] = [];
    const exported: string[] = [];
    const frontendPlugin: BktPlugin = {
      name: 'test-frontend',
      frontends: [
        {
          name: 'test.v0',
          async solve(attrs, bridge) {
            const g = new DefBuilder();
            const ref = (await bridge.solve(g.build(g.mkfile(null, { '/greeting': attrs.greeting })))).ref;
            return { ref, metadata: { 'test.meta': new TextEncoder().encode('m') } };
          },
        },
      ],
      exporters: [
        {
          type: 'capture',
          async resolve(attrs) {
            if (attrs.bogus) throw new (await import('@bkt/core')).BktError('INVALID_ARGUMENT', 'unknown attribute "bogus"', { attribute: 'bogus' });
            return {
              async export(result, ctx) {
                ctx.progress.log(1, 'exporting');
                exported.push(JSON.stringify(await treeOf(result.ref)));
                return { 'capture.done': 'yes' };
              },
            };
          },
        },
      ],
      setup({ hooks }) {
        hooks.beforeSolve.tap('t', (def) => (order.push('beforeSolve'), def));
        hooks.vertexStart.tap('t', () => void order.push('vertexStart'));
        hooks.vertexDone.tap('t', () => void order.push('vertexDone'));
        hooks.beforeExport.tap('t', () => void order.push('beforeExport'));
        hooks.afterSolve.tap('t', (summary) => void order.push(`afterSolve:${summary.error ? 'error' : 'ok'}`));
      },
    };
    const { s } = await open([testPlugin(), frontendPlugin]);
    const r = await s.solve({ frontend: 'test.v0', frontendAttrs: { greeting: 'hi' }, exporters: [{ type: 'capture', attrs: {} }] });
    expect(exported).toEqual([JSON.stringify({ greeting: 'hi' })]);
    expect(r.exporterResponse).toEqual({ 'capture.done': 'yes' });
    expect(r.result.metadata['test.meta']).toBeDefined();
    expect(order[0]).toBe('beforeSolve');
    expect(order.slice(-2)).toEqual(['vertexDone', 'afterSolve:ok']);
    expect(order.indexOf('beforeExport')).toBeGreaterThan(order.indexOf('vertexDone'));

    const err = await s.solve({ frontend: 'test.v0', frontendAttrs: { greeting: 'x' }, exporters: [{ type: 'capture', attrs: { bogus: '1' } }] }).catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect(order.at(-1)).toBe('afterSolve:error');
    const missing = await s.solve({ frontend: 'nope.v0' }).catch((e: unknown) => e);
    expect(isBktError(missing, 'NOT_FOUND')).toBe(true);
  });

  it("a request's build function solves through the bridge; its metadata reaches the exporters; one kind of request only", async () => {
    const seen: { tree: unknown; meta: string }[] = [];
    const capture: BktPlugin = {
      name: 'capture',
      exporters: [
        {
          type: 'capture',
          resolve: async () => ({
            async export(result) {
              seen.push({ tree: await treeOf(result.ref), meta: new TextDecoder().decode(result.metadata['containerimage.config']) });
              return {};
            },
          }),
        },
      ],
    };
    const { s } = await open([testPlugin(), capture]);
    const g = new DefBuilder();
    const def = g.build(g.mkfile(null, { '/made': 'by a build function' }));
    await s.solve({
      build: async (bridge) => ({ ...(await bridge.solve(def)), metadata: { 'containerimage.config': new TextEncoder().encode('{"os":"linux"}') } }),
      exporters: [{ type: 'capture', attrs: {} }],
    });
    expect(seen).toEqual([{ tree: { made: 'by a build function' }, meta: '{"os":"linux"}' }]);
    const both = await s.solve({ definition: def, build: async (bridge) => bridge.solve(def) }).catch((e: unknown) => e);
    expect(isBktError(both, 'INVALID_ARGUMENT')).toBe(true);
  });
});
