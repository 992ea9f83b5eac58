import { describe, expect, it } from 'vitest';
import { digestText, explainSteps, type BuildKeys, type StepKey } from './explain.js';

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
