/** How Solve maps FrontendInputs and SourcePolicy onto the solver's request, over a fake solver. */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import * as control from '@bkt/api/control';
import * as pb from '@bkt/api/pb';
import * as sourcepolicy from '@bkt/api/sourcepolicy';
import type { BuildClient } from '@bkt/core';
import type { Solver, SolveRequest } from '@bkt/solver';
import { BuildTracker } from './builds.js';
import { controlService } from './control.js';

function setup(backend: Partial<Parameters<typeof controlService>[0]> = {}) {
  const requests: SolveRequest[] = [];
  const solver = { solve: async (req: SolveRequest) => (requests.push(req), { exporterResponse: {} }) } as unknown as Solver;
  const service = controlService({
    ...backend,
    solver,
    builds: new BuildTracker(),
    permittedEntitlements: new Set(),
    worker: async () => ({ id: 'w', labels: {}, platforms: [], gcPolicy: [] }),
    diskStat: async () => ({ total: 0, free: 0 }),
    shutdown: new AbortController().signal,
  });
  const solve = (req: Partial<control.SolveRequest>) => service.solve(control.SolveRequest.fromPartial(req), { signal: new AbortController().signal, metadata: new grpc.Metadata() });
  return { requests, solve };
}

/** A session client that offers nothing. */
const NO_CLIENT: BuildClient = {
  localDirNames: () => [],
  localDir: () => undefined,
  openFile: async () => {
    throw new Error('no outputs');
  },
  openStdout: async () => {
    throw new Error('no outputs');
  },
  openDir: async () => {
    throw new Error('no outputs');
  },
  secrets: { get: async () => null },
  ssh: { socketPath: async () => null },
  credentials: async () => null,
};

const definition = pb.Definition.fromPartial({ def: [Buffer.from(pb.Op.encode(pb.Op.fromPartial({ inputs: [] })).finish())] });
const deny = sourcepolicy.Rule.fromPartial({ action: sourcepolicy.PolicyAction.DENY, selector: { identifier: 'docker-image://*' } });

describe('Solve', () => {
  it("answers once the build is over, without waiting for the session client's open transfers to finish", async () => {
    let closed = 0;
    const client = { ...NO_CLIENT, close: () => (closed++, new Promise<void>(() => {})) };
    const { requests, solve } = setup({ sessionClient: async () => client });
    await expect(solve({ Session: 'sess', Frontend: 'dockerfile.v0' })).resolves.toEqual({ ExporterResponse: {} });
    expect(requests[0]!.client).toBe(client);
    expect(closed).toBe(1);
  });

  it("hands the session client's close (running after the answer) to the backend's track, so shutdown can await it", async () => {
    let finishClose!: () => void;
    const client = { ...NO_CLIENT, close: () => new Promise<void>((resolve) => (finishClose = resolve)) };
    const tracked: Promise<unknown>[] = [];
    const { solve } = setup({ sessionClient: async () => client, track: (work) => void tracked.push(work) });
    await solve({ Session: 'sess', Frontend: 'dockerfile.v0' });
    expect(tracked).toHaveLength(1);
    let settled = false;
    void tracked[0]!.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(settled).toBe(false);
    finishClose();
    await tracked[0];
    expect(settled).toBe(true);
  });

  it("tracks a session client's close that fails as settled (its error is the transfer's, not shutdown's)", async () => {
    const client = { ...NO_CLIENT, close: () => Promise.reject(new Error('stream reset')) };
    const tracked: Promise<unknown>[] = [];
    const { solve } = setup({ sessionClient: async () => client, track: (work) => void tracked.push(work) });
    await solve({ Session: 'sess', Frontend: 'dockerfile.v0' });
    expect(tracked).toHaveLength(1);
    await expect(tracked[0]).resolves.toBeUndefined();
  });

  it('passes FrontendInputs to the solver as marshalled definitions, by name', async () => {
    const { requests, solve } = setup();
    await solve({ Frontend: 'dockerfile.v0', FrontendInputs: { context: definition, dockerfile: definition } });
    const got = requests[0]!.frontendInputs!;
    expect(Object.keys(got)).toEqual(['context', 'dockerfile']);
    expect(pb.Definition.decode(got.context!)).toEqual(definition);
  });

  it('refuses FrontendInputs without a Frontend, naming them, before the solver is asked', async () => {
    const { requests, solve } = setup();
    await expect(solve({ Definition: definition, FrontendInputs: { context: definition } })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'SolveRequest.FrontendInputs (context) are read by a Frontend; this request names none',
    });
    expect(requests).toEqual([]);
  });

  it('gives a frontend build the SourcePolicy as the build\'s own policy; a bad rule is refused first', async () => {
    const { requests, solve } = setup();
    await solve({ Frontend: 'dockerfile.v0', SourcePolicy: { version: 1, rules: [deny] } });
    expect(await requests[0]!.sourcePolicy!({ identifier: 'docker-image://busybox', attrs: {} })).toEqual({ action: 'deny', reason: 'rule 0: docker-image://*' });
    const bad = sourcepolicy.Rule.fromPartial({ action: sourcepolicy.PolicyAction.CONVERT, selector: { identifier: '*' } });
    await expect(solve({ Frontend: 'dockerfile.v0', SourcePolicy: { version: 1, rules: [bad] } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(requests).toHaveLength(1);
  });
});
