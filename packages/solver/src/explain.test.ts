import { describe, expect, it } from 'vitest';
import type { RecordInput, RecordNamespace, StoreRecord, StoreRecords } from '@bkt/core';
import { digestText, explainSteps, redactCredentials, saveBuildKeys, type BuildKeys, type StepKey } from './explain.js';

const step = (over: Partial<StepKey> & Pick<StepKey, 'name' | 'kind' | 'key'>): StepKey => ({ digest: `sha256:${over.name.length}`, ran: true, inputs: [], ...over });
const keys = (steps: StepKey[], buildArgs: string[] = []): BuildKeys => ({ target: 't', buildArgs, createdAt: '2026-01-01T00:00:00Z', steps });

describe('explainSteps', () => {
  const from = (digest: string) => step({ name: `[1/2] FROM reg/img:1@${digest}`, kind: 'source', key: `k-${digest}`, source: { identifier: `docker-image://reg/img:1@${digest}`, key: digest } });
  const a = `sha256:${'a'.repeat(64)}`;
  const b = `sha256:${'b'.repeat(64)}`;

  it('names a changed base image digest, matching the step whatever digest its name pins', () => {
    const out = explainSteps(keys([from(b)]), keys([from(a)]));
    expect(out).toEqual([{ step: `[1/2] FROM reg/img:1@${b}`, causes: [{ kind: 'base-image', name: 'docker-image://reg/img:1', from: a, to: b }], reasons: [`base image docker-image://reg/img:1 digest changed: ${a} → ${b}`] }]);
  });

  it('names build args and env by name (values are digests), a changed file, a parent', () => {
    const run = (v: string, key: string) => step({ name: `[2/2] RUN echo ${v}`, kind: 'exec', key, inputs: [{ name: 'base', key: 'kb' }], exec: { args: digestText('echo'), cwd: digestText('/'), env: { V: digestText(v), PATH: digestText('/bin') } } });
    expect(explainSteps(keys([run('two', 'k2')], ['V']), keys([run('one', 'k1')], ['V']))[0].reasons).toEqual(['build arg V changed']);
    const copy = (sum: string, parent: string) => step({ name: '[3/3] COPY a b /', kind: 'file', key: `c-${sum}-${parent}`, inputs: [{ name: 'dest', key: parent }, { name: 'context', key: `ctx-${sum}` }], content: [{ input: 1, paths: ['/a', '/b'], sums: ['sa', sum] }] });
    expect(explainSteps(keys([copy('sb2', 'p')]), keys([copy('sb1', 'p')]))[0].causes).toEqual([{ kind: 'file', name: 'b' }]);
    expect(explainSteps(keys([copy('sb1', 'p2')]), keys([copy('sb1', 'p1')]))[0].causes).toEqual([{ kind: 'parent', name: 'dest' }]);
  });

  it('tells steps from the cache apart, a first build, a new step', () => {
    expect(explainSteps(keys([{ ...from(a), ran: false }]), keys([from(a)]))).toEqual([]);
    expect(explainSteps(keys([from(a)]), undefined)[0].causes[0].kind).toBe('new-step');
    expect(explainSteps(keys([step({ name: 'x', kind: 'exec', key: 'k' })]), keys([]))[0].reasons[0]).toMatch(/previous build had no such step/);
  });
});

describe('saveBuildKeys', () => {
  /** The records of one namespace in memory (the store's records API is tested with the store). */
  const memoryRecords = () => {
    const kept = new Map<string, RecordInput>();
    const ns = {
      put: async (id: string, input: RecordInput) => {
        kept.set(id, input);
        return {} as StoreRecord;
      },
    } as unknown as RecordNamespace;
    return { kept, records: { namespace: () => ns, tempPath: () => '' } as StoreRecords };
  };

  it('keeps no credentials of source URLs: userinfo removed, token query values masked, image digests kept', async () => {
    const { kept, records } = memoryRecords();
    const pinned = `docker-image://docker.io/library/busybox@sha256:${'a'.repeat(64)}`;
    const steps: StepKey[] = [
      step({ name: '[1/3] ADD https://alice:s3cr3t-pass@files.example/a.tar?X-Amz-Signature=abc123&v=2 /', kind: 'source', key: 'k1', source: { identifier: 'https://alice:s3cr3t-pass@files.example/a.tar?X-Amz-Signature=abc123&v=2', key: 'c1' } }),
      step({ name: 'git', kind: 'source', key: 'k2', source: { identifier: 'git://ghp_TOKENVALUE@github.com/org/repo.git#main', key: 'c2' } }),
      step({ name: 'base', kind: 'source', key: 'k3', source: { identifier: pinned, key: 'c3' } }),
      step({ name: '[3/3] RUN x', kind: 'exec', key: 'k4', inputs: [{ name: '[1/3] ADD https://alice:s3cr3t-pass@files.example/a.tar /', key: 'k1' }] }),
    ];
    await saveBuildKeys(records, 'ref1', keys(steps));
    const stored = JSON.stringify(kept.get('ref1'));
    expect(stored).not.toMatch(/s3cr3t-pass|ghp_TOKENVALUE|abc123|alice/);
    const back = JSON.parse(kept.get('ref1')!.data!.keys) as BuildKeys;
    expect(back.steps.map((s) => s.source?.identifier)).toEqual(['https://files.example/a.tar?X-Amz-Signature=***&v=2', 'git://github.com/org/repo.git#main', pinned, undefined]);
    expect(back.steps[0].name).toBe('[1/3] ADD https://files.example/a.tar?X-Amz-Signature=***&v=2 /');
    expect(back.steps[3].inputs[0].name).toBe('[1/3] ADD https://files.example/a.tar /');
  });

  it('redactCredentials leaves text without credentials as it is', () => {
    for (const t of ['https://files.example/a.tar?v=2', 'local://context', 'docker-image://reg:5000/img:1@sha256:abc', 'RUN echo a@b', 'oci-layout://store/x@sha256:1']) expect(redactCredentials(t)).toBe(t);
  });
});
