import { describe, expect, it } from 'vitest';
import { EnvList } from './envlist.js';

describe('EnvList', () => {
  it('keeps Go EnvList order: setting a key again moves it last, deleting removes it', () => {
    const env = EnvList.EMPTY.set('A', '1').set('B', '2').set('A', '3').set('C', '4').delete('B');
    expect(env.entries()).toEqual([['A', '3'], ['C', '4']]);
    expect(env.size).toBe(2);
    expect(env.get('B')).toBeUndefined();
    expect(env.delete('missing')).toBe(env);
  });

  it('is persistent: older lists and branches read their own values', () => {
    const base = EnvList.fromEntries([['A', '1'], ['B', '2']]);
    const later = base.set('A', 'later').delete('B');
    const branch = base.set('C', 'branch');
    const branchOfBranch = branch.set('A', 'bb');
    expect(base.entries()).toEqual([['A', '1'], ['B', '2']]);
    expect(later.entries()).toEqual([['A', 'later']]);
    expect(branch.entries()).toEqual([['A', '1'], ['B', '2'], ['C', 'branch']]);
    expect(branchOfBranch.entries()).toEqual([['B', '2'], ['C', 'branch'], ['A', 'bb']]);
    expect([base.get('A'), later.get('A'), branch.get('A'), branchOfBranch.get('A')]).toEqual(['1', 'later', '1', 'bb']);
    // Each step of one line keeps its own view.
    const steps = [EnvList.EMPTY];
    for (let i = 0; i < 50; i++) steps.push(steps[i].set('K', String(i)));
    expect(steps.map((s) => s.get('K'))).toEqual([undefined, ...Array.from({ length: 50 }, (_, i) => String(i))]);
  });

  it('sets 100,000 variables along a chain in linear time, every step still readable', () => {
    const started = performance.now();
    let env = EnvList.EMPTY;
    const chain: EnvList[] = [];
    for (let i = 0; i < 100_000; i++) {
      env = env.set(`V${i % 50_000}`, String(i));
      chain.push(env);
      if (env.get(`V${i % 50_000}`) !== String(i)) throw new Error(`step ${i} reads ${env.get(`V${i % 50_000}`)}`);
    }
    expect(env.size).toBe(50_000);
    expect(chain[49_999].get('V0')).toBe('0');
    expect(chain[50_000].get('V0')).toBe('50000');
    // Copying the list at each step (the quadratic way) takes minutes here.
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});
