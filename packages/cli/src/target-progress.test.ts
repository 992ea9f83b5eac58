import { describe, expect, it } from 'vitest';
import type { Digest, ProgressEvent, VertexEvent } from '@bkt/core';
import { targetProgress } from './target-progress.js';

const d = (c: string) => `sha256:${c.repeat(64)}` as Digest;

describe('targetProgress', () => {
  it('prefixes vertex names with the target and gives each target its own digests, the same for every event of a vertex', () => {
    const seen: ProgressEvent[] = [];
    const a = targetProgress('a', (e) => seen.push(e));
    const b = targetProgress('b', (e) => seen.push(e));
    const now = new Date();
    for (const emit of [a, b]) {
      emit({ type: 'vertex', vertex: { digest: d('1'), inputs: [], name: 'base', cached: false, started: now } });
      emit({ type: 'vertex', vertex: { digest: d('2'), inputs: [d('1')], name: 'RUN make', cached: false, started: now } });
      emit({ type: 'log', log: { vertex: d('2'), stream: 1, msg: new TextEncoder().encode('ok\n'), timestamp: now } });
      emit({ type: 'status', status: { id: 'x', vertex: d('2'), name: 'x', current: 1, total: 2, timestamp: now } });
      emit({ type: 'warning', warning: { vertex: d('2'), level: 1, short: 'w', detail: [] } });
    }
    const vertices = seen.flatMap((e) => (e.type === 'vertex' ? [e.vertex] : []));
    const [aBase, aRun, bBase, bRun] = vertices as [VertexEvent, VertexEvent, VertexEvent, VertexEvent];
    expect([aBase.name, aRun.name, bRun.name]).toEqual(['[a] base', '[a] RUN make', '[b] RUN make']);
    expect(aRun.inputs).toEqual([aBase.digest]);
    const refs = seen.slice(2, 5).map((e) => (e.type === 'log' ? e.log.vertex : e.type === 'status' ? e.status.vertex : e.type === 'warning' ? e.warning.vertex : undefined));
    expect(refs).toEqual([aRun.digest, aRun.digest, aRun.digest]);
    expect(new Set([d('1'), d('2'), aBase.digest, aRun.digest, bBase.digest, bRun.digest]).size).toBe(6);
    expect(aRun.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});
