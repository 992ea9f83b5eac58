/**
 * LLBBridge served over an in-memory duplex (as over a frontend's stdio) to
 * a hand-written HTTP/2 gRPC client, on a real solver and store: every RPC
 * reaches the build's bridge and answers as BuildKit's gateway does.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as gw from '@bkt/api/gateway';
import * as pb from '@bkt/api/pb';
import { BktError, createBkt, withFailedExec, type BktPlugin, type BuildResult, type FrontendBridge } from '@bkt/core';
import { writeFile } from 'node:fs/promises';
import { mkdir, mkfile, scratch } from '@bkt/llb';
import { builtinOpsPlugin, openSolver, type Solver } from '@bkt/solver';
import { GrpcCallError, StreamGrpcClient } from '@bkt/testkit';
import { LLBBridgeSession } from './session.js';
import { serveOverStream } from './serve.js';
import { FRONTEND_CAPS } from './caps.js';
import { SOLVE_DETAIL_TYPE, VERTEX_DETAIL_TYPE } from './errors.js';

/** Two connected in-memory duplex streams. */
function duplexPair(): [Duplex, Duplex] {
  let a!: Duplex;
  let b!: Duplex;
  a = new Duplex({ read() {}, write(chunk, _enc, cb) { b.push(chunk); cb(); }, final(cb) { b.push(null); cb(); } });
  b = new Duplex({ read() {}, write(chunk, _enc, cb) { a.push(chunk); cb(); }, final(cb) { a.push(null); cb(); } });
  return [a, b];
}

/** A frontend that serves LLBBridge to `client` (the "frontend process") and returns what it Returned. */
function bridgeFrontend(client: (c: StreamGrpcClient) => Promise<void>): BktPlugin {
  return {
    name: 'llbbridge-test',
    frontends: [
      {
        name: 'bridged.v0',
        async solve(_attrs, bridge: FrontendBridge, ctx): Promise<BuildResult> {
          const session = new LLBBridgeSession({ bridge, signal: ctx.signal, workers: [{ id: 'w0', labels: { a: 'b' }, platforms: [{ os: 'linux', architecture: 'amd64' }] }] });
          const [serverSide, clientSide] = duplexPair();
          const server = serveOverStream(session, serverSide);
          const c = new StreamGrpcClient(clientSide);
          try {
            await client(c);
            return session.result();
          } finally {
            c.close();
            server.close();
            await session.discard();
          }
        },
      },
    ],
  };
}

const def = (files: Record<string, string>, dirs: string[] = []) => {
  let s = scratch();
  for (const d of dirs) s = s.file(mkdir(d, 0o755));
  for (const [p, data] of Object.entries(files)) s = s.file(mkfile(p, 0o644, data));
  return s.marshal({ platform: 'linux/amd64' });
};

describe('LLBBridge over a duplex stream', () => {
  let root: string;
  let solver: Solver | undefined;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'bkt-gateway-session-'));
  });
  afterEach(async () => {
    await solver?.close();
    solver = undefined;
    await rm(root, { recursive: true, force: true });
  });
  const open = async (plugins: BktPlugin[]) => (solver = await openSolver({ root, bkt: await createBkt([builtinOpsPlugin(), ...plugins]) }));

  it('Ping, Inputs, Solve, ReadFile, ReadDir, StatFile, Evaluate, Warn, Return: the build result is what the frontend returned', async () => {
    const seen: Record<string, unknown> = {};
    const s = await open([
      bridgeFrontend(async (c) => {
        const pong = await c.call('ping', {});
        seen.caps = pong.FrontendAPICaps.filter((x) => x.Enabled).map((x) => x.ID);
        seen.workers = pong.Workers.map((w) => w.ID);
        const inputs = await c.call('inputs', {});
        seen.inputs = Object.keys(inputs.Definitions);
        const res = await c.call('solve', { ...gw.SolveRequest.fromPartial({}), Definition: inputs.Definitions.context, allowResultReturn: true, allowResultArrayRef: true });
        const ref = res.result?.result?.$case === 'ref' ? res.result.result.value.id : '';
        seen.ref = ref;
        seen.file = (await c.call('readFile', { Ref: ref, FilePath: '/Dockerfile.txt', Range: undefined })).Data.toString();
        seen.range = (await c.call('readFile', { Ref: ref, FilePath: 'Dockerfile.txt', Range: { Offset: 5, Length: 3 } })).Data.toString();
        seen.dir = (await c.call('readDir', { Ref: ref, DirPath: '/', IncludePattern: '' })).entries.map((e) => e.path);
        const st = (await c.call('statFile', { Ref: ref, Path: 'sub' })).stat!;
        seen.dirMode = st.mode >>> 31; // Go's os.ModeDir
        await c.call('evaluate', { Ref: ref });
        seen.badRef = await c.call('readFile', { Ref: 'nope', FilePath: 'x', Range: undefined }).catch((e: unknown) => e);
        seen.missing = await c.call('readFile', { Ref: ref, FilePath: 'missing', Range: undefined }).catch((e: unknown) => e);
        await c.call('warn', gw.WarnRequest.fromPartial({ digest: `sha256:${'a'.repeat(64)}`, level: 1, short: Buffer.from('careful'), detail: [Buffer.from('a detail')] }));
        seen.policies = await c
          .call('solve', { ...gw.SolveRequest.fromPartial({ SourcePolicies: [{ version: 1, rules: [] }] }), Definition: def({ '/x': 'x' }) })
          .catch((e: unknown) => e);
        // A second solve (no result return: the deprecated ref id).
        const plain = await c.call('solve', { ...gw.SolveRequest.fromPartial({}), Definition: def({ '/other': 'x' }) });
        seen.plainRef = plain.ref;
        await c.call('return', {
          result: { result: { $case: 'ref', value: { id: ref, def: undefined } }, metadata: { 'containerimage.config': Buffer.from('{"config":{}}') }, attestations: {} },
          error: undefined,
        });
        seen.twice = await c.call('return', { result: gw.Result.fromPartial({}), error: undefined }).catch((e: unknown) => e);
      }),
    ]);
    const warnings: string[] = [];
    const context = pb.Definition.encode(def({ '/Dockerfile.txt': 'FROM scratch\n', '/sub/inner': 'x' }, ['/sub'])).finish();
    const r = await s.solve({
      frontend: 'bridged.v0',
      frontendInputs: { context },
      onProgress: (e) => void (e.type === 'warning' && warnings.push(e.warning.short)),
    });
    expect(seen.caps).toEqual(expect.arrayContaining(['solve.base', 'readfile', 'readdir', 'statfile', 'return', 'frontend.inputs', 'gateway.warnings']));
    expect(FRONTEND_CAPS).toContain('gateway.exec');
    expect(seen.workers).toEqual(['w0']);
    expect(seen.inputs).toEqual(['context']);
    expect(seen.file).toBe('FROM scratch\n');
    expect(seen.range).toBe('scr');
    expect(seen.dir).toEqual(['Dockerfile.txt', 'sub']);
    expect(seen.dirMode).toBe(1);
    expect((seen.badRef as GrpcCallError).code).toBe(5); // NOT_FOUND
    expect((seen.badRef as GrpcCallError).message).toContain('"nope"');
    expect((seen.missing as GrpcCallError).code).toBe(5);
    expect((seen.missing as GrpcCallError).message).toContain('missing');
    expect(seen.plainRef).toMatch(/^[0-9a-z]{25}$/);
    expect((seen.policies as GrpcCallError).code).toBe(12); // UNIMPLEMENTED, naming the field
    expect((seen.policies as GrpcCallError).message).toContain('SourcePolicies');
    expect((seen.twice as GrpcCallError).code).toBe(3); // INVALID_ARGUMENT: already returned
    expect(warnings).toContain('careful');
    expect(Buffer.from(r.result.metadata['containerimage.config']).toString()).toBe('{"config":{}}');
    expect(r.result.ref).not.toBeNull();
  });

  it("a failed exec step's Solve error carries errdefs.Solve: its op and the ref ids of its inputs and mounts, which the frontend can read", async () => {
    // An exec executor standing in for runc: the step writes a file in its root mount, then fails.
    const failingExec: BktPlugin = {
      name: 'failing-exec',
      opExecutors: [
        {
          kind: 'exec',
          async run(op, inputs, ctx) {
            const mut = await ctx.snapshotter.prepare(inputs[0]?.snapshot ?? null);
            await writeFile(join(mut.path, 'written-by-the-step'), 'partial work\n');
            const mount = await mut.commit();
            const err = new BktError('EXEC_FAILED', 'process "/bin/false" did not complete successfully: exit code: 1', { opDigest: ctx.vertex?.digest, exitCode: 1 });
            throw withFailedExec(err, { opDigest: ctx.vertex!.digest, name: ctx.vertex!.name, op, inputs: inputs.map((i) => i.snapshot), mounts: [mount] });
          },
        },
      ],
    };
    let failure: GrpcCallError | undefined;
    let partial = '';
    const s = await open([
      failingExec,
      bridgeFrontend(async (c) => {
        const run = scratch().file(mkfile('/base', 0o644, 'base')).run({ args: ['/bin/false'] }).root().marshal({ platform: 'linux/amd64' });
        failure = await c.call('solve', { ...gw.SolveRequest.fromPartial({}), Definition: run }).then(() => undefined, (e: GrpcCallError) => e);
        const solve = failure?.details.find((d) => d.typeUrl === SOLVE_DETAIL_TYPE);
        const json = JSON.parse(solve!.value.toString()) as { mountIDs: string[] };
        partial = await c.call('readFile', { Ref: json.mountIDs[0], FilePath: 'written-by-the-step', Range: undefined }).then((r) => r.Data.toString(), (e: Error) => `read failed: ${e.message}`);
        await c.call('return', { result: undefined, error: { code: failure!.code, message: failure!.message, details: [] } });
      }),
    ]);
    await s.solve({ frontend: 'bridged.v0' }).catch(() => undefined);
    expect(failure?.code).toBe(2); // EXEC_FAILED → UNKNOWN, as BuildKit's exec errors
    expect(failure?.message).toContain('exit code: 1');
    const solve = JSON.parse(failure!.details.find((d) => d.typeUrl === SOLVE_DETAIL_TYPE)!.value.toString()) as { inputIDs: string[]; mountIDs: string[]; op: { exec: { meta: { args: string[] } } } };
    expect(solve.inputIDs).toHaveLength(1);
    expect(solve.mountIDs).toHaveLength(1);
    expect(solve.op.exec.meta.args).toEqual(['/bin/false']);
    const vertex = JSON.parse(failure!.details.find((d) => d.typeUrl === VERTEX_DETAIL_TYPE)!.value.toString()) as { digest: string };
    expect(vertex.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(partial).toBe('partial work\n');
  });

  it('a returned error fails the build with its message; a frontend exec needing network.host without the entitlement is refused naming it', async () => {
    const s = await open([
      bridgeFrontend(async (c) => {
        await c.call('return', { result: undefined, error: { code: 3, message: 'Dockerfile parse error line 3: unknown instruction FOO', details: [] } });
      }),
    ]);
    const err = await s.solve({ frontend: 'bridged.v0' }).catch((e: unknown) => e);
    expect((err as Error).message).toContain('unknown instruction FOO');

    let refused: GrpcCallError | undefined;
    await solver!.close();
    solver = undefined;
    // An exec executor that must never run: the entitlement check refuses the definition when it loads.
    const neverRuns: BktPlugin = {
      name: 'never-runs',
      opExecutors: [{ kind: 'exec', run: async () => Promise.reject(new Error('the exec op ran')) }],
    };
    const s2 = await open([
      neverRuns,
      bridgeFrontend(async (c) => {
        const exec = scratch().run({ args: ['/bin/true'], network: 'host' }).root().marshal({ platform: 'linux/amd64' });
        refused = await c.call('solve', { ...gw.SolveRequest.fromPartial({}), Definition: exec }).then(() => undefined, (e: GrpcCallError) => e);
        await c.call('return', { result: gw.Result.fromPartial({}), error: undefined });
      }),
    ]);
    await s2.solve({ frontend: 'bridged.v0' });
    expect(refused?.code).toBe(7); // PERMISSION_DENIED
    expect(refused?.message).toContain('network.host');
  });
});

describe('LLBBridgeSession NewContainer in flight (a fake bridge)', () => {
  /** A bridge whose containers are made when `make()` is called, each counting its releases. */
  function slowBridge() {
    const pending: (() => void)[] = [];
    const made: { released: number }[] = [];
    const bridge = {
      newContainer: () =>
        new Promise((resolve) => {
          pending.push(() => {
            const c = { released: 0 };
            made.push(c);
            resolve({ release: async () => void c.released++, start: async () => { throw new Error('not used'); } });
          });
        }),
    } as unknown as FrontendBridge;
    const makeAll = () => pending.splice(0).forEach((f) => f());
    return { bridge, made, makeAll, pending };
  }
  const request = (id: string) => gw.NewContainerRequest.fromPartial({ ContainerID: id });
  const tick = () => new Promise((r) => setTimeout(r, 0));

  it('refuses a second NewContainer with the id of one still being made, and makes one container', async () => {
    const { bridge, made, makeAll } = slowBridge();
    const session = new LLBBridgeSession({ bridge });
    const first = session.newContainer(request('c1'));
    await tick();
    await expect(session.newContainer(request('c1'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('"c1" exists already') });
    makeAll();
    await first;
    expect(made).toHaveLength(1);
    await session.discard();
    expect(made[0].released).toBe(1);
  });

  it('releases a container whose NewContainer was in flight when the session was discarded', async () => {
    const { bridge, made, makeAll } = slowBridge();
    const session = new LLBBridgeSession({ bridge });
    const creating = session.newContainer(request('c1'));
    await tick();
    await session.discard();
    makeAll();
    await expect(creating).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(made).toHaveLength(1);
    expect(made[0].released).toBe(1);
    await expect(session.releaseContainer({ ContainerID: 'c1' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('releases a container made after the build was cancelled', async () => {
    const { bridge, made, makeAll } = slowBridge();
    const controller = new AbortController();
    const session = new LLBBridgeSession({ bridge, signal: controller.signal });
    const creating = session.newContainer(request('c1'));
    await tick();
    controller.abort();
    makeAll();
    await expect(creating).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(made[0].released).toBe(1);
  });
});
