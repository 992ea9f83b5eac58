/**
 * The GC's scheduling against a fake solver (counting its store
 * measurements and prunes): after builds, one run once the last build has
 * been over for the delay (none while builds run); the store measured once a
 * run unless a policy removed something; a stopped collector runs nothing.
 */
import { describe, expect, it } from 'vitest';
import type { UsageRecord } from '@bkt/core';
import type { Solver } from '@bkt/solver';
import { Collector } from './collector.js';
import type { GCPolicy } from './gc.js';

const policy = (p: Partial<GCPolicy>): GCPolicy => ({ all: false, keepDurationMs: 0, reservedSpace: 0, maxUsedSpace: 0, minFreeSpace: 0, filters: [], ...p });
const record = (id: string, size: number) => ({ id, size, recordType: 'regular', parents: [], description: '', inUse: false, mutable: false, shared: false, createdAt: new Date(), usageCount: 0 }) as UsageRecord;

function fakeSolver(records: UsageRecord[]) {
  const calls = { diskUsage: 0, prune: 0 };
  const solver = {
    diskUsage: async () => {
      calls.diskUsage++;
      return [...records];
    },
    prune: async (opts: { keepStorage?: number }) => {
      calls.prune++;
      const removed: UsageRecord[] = [];
      let used = records.reduce((n, r) => n + r.size, 0);
      while (records.length > 0 && used > (opts.keepStorage ?? 0)) {
        const r = records.shift()!;
        used -= r.size;
        removed.push(r);
      }
      return removed;
    },
  } as unknown as Solver;
  return { solver, calls };
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('GC collector', () => {
  it('after builds: one run, the delay after the last build ended; none while a build runs', async () => {
    const { solver, calls } = fakeSolver([record('a', 10)]);
    let busy = false;
    const c = new Collector({ solver, root: '/', policies: [policy({ maxUsedSpace: 1000 })], intervalMs: 3600_000, busy: () => busy, log: () => {}, afterBuildDelayMs: 50 });
    try {
      c.afterBuild();
      await settle(20);
      c.afterBuild();
      c.afterBuild();
      expect(calls.diskUsage).toBe(0);
      await settle(120);
      expect(calls.diskUsage).toBe(1);
      busy = true;
      c.afterBuild();
      await settle(120);
      expect(calls.diskUsage).toBe(1);
    } finally {
      await c.stop();
    }
  });

  it('measures the store once a run when no policy prunes, again after a policy removed something', async () => {
    const within = fakeSolver([record('a', 10), record('b', 10)]);
    const policies = [policy({ maxUsedSpace: 1000, filters: ['type==source.local'] }), policy({ maxUsedSpace: 1000 }), policy({ maxUsedSpace: 1000 }), policy({ all: true, maxUsedSpace: 1000 })];
    const c1 = new Collector({ solver: within.solver, root: '/', policies, intervalMs: 3600_000, busy: () => false, log: () => {}, afterBuildDelayMs: 1 });
    c1.afterBuild();
    await settle(50);
    await c1.stop();
    expect(within.calls).toEqual({ diskUsage: 1, prune: 0 });

    const over = fakeSolver([record('a', 10), record('b', 10), record('c', 10)]);
    const lines: string[] = [];
    const c2 = new Collector({ solver: over.solver, root: '/', policies: [policy({ maxUsedSpace: 15 }), policy({ maxUsedSpace: 15 }), policy({ maxUsedSpace: 5 })], intervalMs: 3600_000, busy: () => false, log: (l) => lines.push(l), afterBuildDelayMs: 1 });
    c2.afterBuild();
    await settle(50);
    await c2.stop();
    // Policy 0 removes two records; policy 1 sees the store measured again (10 bytes: nothing to do); policy 2 removes the last.
    expect(over.calls).toEqual({ diskUsage: 2, prune: 2 });
    expect(lines).toEqual(['gc: policy 0 removed 2 records, 20 bytes', 'gc: policy 2 removed 1 records, 10 bytes']);
  });

  it('a stopped collector runs no pending after-build GC', async () => {
    const { solver, calls } = fakeSolver([record('a', 10)]);
    const c = new Collector({ solver, root: '/', policies: [policy({ maxUsedSpace: 1000 })], intervalMs: 3600_000, busy: () => false, log: () => {}, afterBuildDelayMs: 30 });
    c.afterBuild();
    await c.stop();
    await settle(80);
    expect(calls.diskUsage).toBe(0);
  });
});
