/** UpdateBuildHistory (pin, delete, finalize) and the ListenBuildHistory events they cause, over a fake solver. */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import * as control from '@bkt/api/control';
import { BktError } from '@bkt/core';
import type { BuildHistoryRecord, Solver } from '@bkt/solver';
import { BuildTracker } from './builds.js';
import { controlService, type ControlBackend } from './control.js';

/** A solver holding build records in memory, with the history's pin and delete contract. */
function fakeSolver(refs: string[]) {
  const records = new Map<string, BuildHistoryRecord>(
    refs.map((ref, i) => [
      ref,
      { ref, frontend: '', frontendAttrs: {}, exporters: [], status: 'completed', createdAt: new Date(1000 * i), numTotalSteps: 1, numCachedSteps: 0, numCompletedSteps: 1, exporterResponse: {}, pinned: false },
    ]),
  );
  const deletedListeners = new Set<(ref: string) => void>();
  const calls: string[] = [];
  const solver = {
    listBuilds: async (o: { ref?: string } = {}) => [...records.values()].filter((r) => o.ref === undefined || r.ref === o.ref).reverse(),
    pinBuild: async (ref: string, pinned: boolean) => {
      calls.push(`pin ${ref} ${pinned}`);
      const r = records.get(ref);
      if (!r) throw new BktError('NOT_FOUND', `no build ${ref} in the history`);
      r.pinned = pinned;
    },
    deleteBuild: async (ref: string) => {
      calls.push(`delete ${ref}`);
      if (!records.delete(ref)) throw new BktError('NOT_FOUND', `no build ${ref} in the history`);
      for (const l of deletedListeners) l(ref);
    },
    onBuildDeleted: (l: (ref: string) => void) => (deletedListeners.add(l), () => deletedListeners.delete(l)),
  };
  return { solver: solver as unknown as Solver, calls, records };
}

function setup(refs: string[]) {
  const fake = fakeSolver(refs);
  const builds = new BuildTracker();
  fake.solver.onBuildDeleted((ref) => builds.deleted(ref));
  const backend: ControlBackend = {
    solver: fake.solver,
    builds,
    permittedEntitlements: new Set(),
    worker: async () => ({ id: 'w', labels: {}, platforms: [], gcPolicy: [] }),
    diskStat: async () => ({ total: 0, free: 0 }),
    shutdown: new AbortController().signal,
  };
  return { ...fake, builds, service: controlService(backend) };
}

const call = () => ({ signal: new AbortController().signal, metadata: new grpc.Metadata() });
const update = (req: Partial<control.UpdateBuildHistoryRequest>) => control.UpdateBuildHistoryRequest.fromPartial(req);

/** The first `n` events of a ListenBuildHistory stream, then it is closed. */
async function firstEvents(stream: AsyncIterable<control.BuildHistoryEvent>, n: number): Promise<control.BuildHistoryEvent[]> {
  const out: control.BuildHistoryEvent[] = [];
  for await (const e of stream) {
    out.push(e);
    if (out.length === n) break;
  }
  return out;
}

describe('UpdateBuildHistory', () => {
  it('Pinned sets the pin (only when it changes), and a listener gets the record again as COMPLETE; Delete emits DELETED', async () => {
    const { service, calls } = setup(['a', 'b']);
    const listening = firstEvents(service.listenBuildHistory(control.BuildHistoryRequest.fromPartial({}), call()), 4);
    await new Promise((r) => setTimeout(r, 10));
    await service.updateBuildHistory(update({ Ref: 'a', Pinned: true }), call());
    await service.updateBuildHistory(update({ Ref: 'a', Pinned: true }), call());
    await service.updateBuildHistory(update({ Ref: 'b', Delete: true }), call());
    const events = await listening;
    expect(events.map((e) => [e.type, e.record?.Ref, e.record?.pinned])).toEqual([
      [control.BuildHistoryEventType.COMPLETE, 'a', false],
      [control.BuildHistoryEventType.COMPLETE, 'b', false],
      [control.BuildHistoryEventType.COMPLETE, 'a', true],
      [control.BuildHistoryEventType.DELETED, 'b', false],
    ]);
    expect(calls).toEqual(['pin a true', 'delete b']);
    // Neither Pinned nor Finalize nor Delete: unpinned, as BuildKit's.
    await service.updateBuildHistory(update({ Ref: 'a' }), call());
    expect(calls).toEqual(['pin a true', 'delete b', 'pin a false']);
  });

  it('a listener of one Ref ends with its DELETED event', async () => {
    const { service, builds } = setup([]);
    const stream = firstEvents(service.listenBuildHistory(control.BuildHistoryRequest.fromPartial({ Ref: 'r' }), call()), 99);
    await new Promise((r) => setTimeout(r, 10));
    const tracked = builds.start('r', { frontend: '', frontendAttrs: {}, exporters: [] });
    builds.deleted('r');
    tracked.finish();
    expect((await stream).map((e) => e.type)).toEqual([control.BuildHistoryEventType.STARTED, control.BuildHistoryEventType.DELETED]);
  });

  it('Delete or Finalize of a running build is INVALID_ARGUMENT; an unknown ref NOT_FOUND; Finalize changes no pin', async () => {
    const { service, builds, calls } = setup(['done']);
    builds.start('busy', { frontend: '', frontendAttrs: {}, exporters: [] });
    await expect(service.updateBuildHistory(update({ Ref: 'busy', Delete: true }), call())).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'build busy is still running; its record can be deleted once it ends',
    });
    await expect(service.updateBuildHistory(update({ Ref: 'nope', Delete: true }), call())).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(service.updateBuildHistory(update({ Ref: 'nope', Pinned: true }), call())).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(service.updateBuildHistory(update({ Ref: 'done', Finalize: true }), call())).resolves.toEqual({});
    expect(calls).toEqual(['delete nope']);
  });
});
