/** The Controller's handlers over a fake solver: held refs, the builds it tracks and forgets, Input's bounds, the disabled service. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as controller from '@bkt/api/controller';
import type { BuildDebugSession, Solver, SolveRequest } from '@bkt/solver';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BuildTracker } from './builds.js';
import { controllerDisabled, controllerService, Inputs } from './controller.js';
import { DebugBuilds } from './debug-builds.js';

const ctx = () => ({ signal: new AbortController().signal, metadata: new grpc.Metadata() });

/** A solver whose builds succeed (or fail before any debug session, `failEarly`) and hold their debug session until it ends. */
function fakeSolver(opts: { failEarly?: boolean } = {}): Solver & { solves: number } {
  const solver = {
    solves: 0,
    async solve(req: SolveRequest) {
      solver.solves++;
      if (opts.failEarly) throw new Error('Dockerfile:1: unknown instruction: FORM');
      const ended = new AbortController();
      await req.debug!({ buildId: req.buildId!, exporterResponse: { 'containerimage.digest': 'sha256:0' }, signal: req.signal ?? ended.signal } as unknown as BuildDebugSession);
      ended.abort();
      return { exporterResponse: {} };
    },
  };
  return solver as unknown as Solver & { solves: number };
}

describe('Controller.Build', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bkt-controller-'));
    await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\n');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const setup = (solver: Solver) => {
    const builds = new BuildTracker();
    const debugBuilds = new DebugBuilds();
    const service = controllerService({ solver, builds, debugBuilds, permittedEntitlements: new Set(), shutdown: new AbortController().signal });
    const build = (ref: string) => service.build(controller.BuildRequest.fromPartial({ Ref: ref, Options: { ContextPath: dir } }), ctx());
    return { builds, debugBuilds, service, build };
  };

  it('refuses a ref that is held before starting anything; no build is left running', async () => {
    const solver = fakeSolver();
    const { builds, debugBuilds, service, build } = setup(solver);
    await expect(build('r1')).resolves.toEqual({ ExporterResponse: { 'containerimage.digest': 'sha256:0' } });
    await expect(build('r1')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('a build with ref r1 is already held') });
    expect(solver.solves).toBe(1);
    expect(builds.running()).toEqual([]);
    await expect(Promise.race([builds.idle().then(() => 'idle'), new Promise((r) => setTimeout(() => r('busy'), 1000))])).resolves.toBe('idle');
    expect((await service.list(controller.ListRequest.fromPartial({}), ctx())).keys).toEqual(['r1']);
    await service.disconnect(controller.DisconnectRequest.fromPartial({ Ref: 'r1' }), ctx());
    expect(debugBuilds.refs()).toEqual([]);
    // Released, the ref builds again.
    await expect(build('r1')).resolves.toBeDefined();
    await debugBuilds.closeAll();
  });

  it('forgets a build that failed before its debug session (nothing to hold)', async () => {
    const { builds, debugBuilds, build } = setup(fakeSolver({ failEarly: true }));
    await expect(build('r2')).rejects.toThrow('unknown instruction: FORM');
    await new Promise((r) => setTimeout(r, 0));
    expect(debugBuilds.refs()).toEqual([]);
    expect(builds.running()).toEqual([]);
    await expect(build('r2')).rejects.toThrow('unknown instruction: FORM');
  });
});

describe('Inputs', () => {
  it('keeps at most 64 refs (the oldest dropped) and 16 MiB per ref', async () => {
    const inputs = new Inputs();
    for (let i = 0; i < 100; i++) inputs.add(`ref${i}`, Buffer.from('x'));
    expect(inputs.refs()).toHaveLength(64);
    expect(inputs.refs()[0]).toBe('ref36');
    inputs.add('big', Buffer.alloc(16 << 20));
    expect(() => inputs.add('big', Buffer.from('y'))).toThrow('Input for ref big: more than 16777216 bytes');
    expect(inputs.refs()).not.toContain('big');
  });

  it('drops what it read', async () => {
    const inputs = new Inputs();
    inputs.add('r', Buffer.from('FROM scratch\n'));
    inputs.end('r');
    await expect(inputs.read('r', 1000)).resolves.toEqual(Buffer.from('FROM scratch\n'));
    expect(inputs.refs()).toEqual([]);
  });
});

describe('controllerDisabled', () => {
  it('answers every unary method UNIMPLEMENTED with the reason', async () => {
    const off = controllerDisabled('start bktd with --controller');
    await expect(off.build(controller.BuildRequest.fromPartial({}), ctx())).rejects.toMatchObject({ code: 'UNIMPLEMENTED', message: 'start bktd with --controller' });
    await expect(off.list(controller.ListRequest.fromPartial({}), ctx())).rejects.toMatchObject({ code: 'UNIMPLEMENTED' });
  });
});

describe('DebugBuilds idle release', () => {
  it('releases a held build no client touched for idleMs; a Controller call naming it restarts the clock', async () => {
    const debugBuilds = new DebugBuilds({ idleMs: 300 });
    const held = debugBuilds.start('idle', fakeSolver(), { frontend: 'dockerfile.v0' });
    await held.outcome;
    await new Promise((r) => setTimeout(r, 200));
    debugBuilds.get('idle');
    await new Promise((r) => setTimeout(r, 200));
    expect(debugBuilds.refs()).toEqual(['idle']);
    await expect(Promise.race([held.finished.then(() => 'released'), new Promise((r) => setTimeout(() => r('held'), 1000))])).resolves.toBe('released');
    expect(debugBuilds.refs()).toEqual([]);
  });
});
