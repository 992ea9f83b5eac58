import { describe, expect, it } from 'vitest';
import { BktError } from '@bkt/core';
import { flagOfAttribute, namingFlag, progressMode } from './build-flags.js';

describe('progressMode', () => {
  it('--progress wins, then BUILDKIT_PROGRESS, then auto', () => {
    expect(progressMode('plain', { BUILDKIT_PROGRESS: 'rawjson' })).toBe('plain');
    expect(progressMode(undefined, { BUILDKIT_PROGRESS: 'rawjson' })).toBe('rawjson');
    expect(progressMode(undefined, { BUILDKIT_PROGRESS: '' })).toBe('auto');
    expect(progressMode(undefined, {})).toBe('auto');
  });

  it('a bad BUILDKIT_PROGRESS is an error naming it', () => {
    expect(() => progressMode(undefined, { BUILDKIT_PROGRESS: 'fancy' })).toThrow('BUILDKIT_PROGRESS=fancy: expected one of auto, tty, plain, rawjson, quiet');
  });
});

describe('namingFlag', () => {
  it('tells a frontend error about an attribute as an error of the flag that set it', () => {
    const target = namingFlag(new BktError('INVALID_ARGUMENT', 'target stage "nope" could not be found (stages: a, b)', { attribute: 'target' }), { target: 'nope' });
    expect((target as Error).message).toBe('--target nope: target stage "nope" could not be found (stages: a, b)');
    const platform = namingFlag(new BktError('INVALID_ARGUMENT', 'platform: failed to parse target platform x/y/z/w', { attribute: 'platform' }), { platform: 'x/y/z/w' });
    expect((platform as Error).message).toBe('--platform x/y/z/w: failed to parse target platform x/y/z/w');
    expect(flagOfAttribute('build-arg:SOURCE_DATE_EPOCH', 'soon')).toBe('--build-arg SOURCE_DATE_EPOCH=soon');
  });

  it('leaves errors at a Dockerfile line, about other attributes, or already naming the flag', () => {
    const located = new BktError('INVALID_ARGUMENT', 'Dockerfile:3: x', { attribute: 'target', file: 'Dockerfile', line: 3 });
    expect(namingFlag(located, { target: 'x' })).toBe(located);
    const other = new BktError('INVALID_ARGUMENT', 'requestid: x', { attribute: 'requestid' });
    expect(namingFlag(other, {})).toBe(other);
    const named = new BktError('INVALID_ARGUMENT', '--target x: y', { attribute: 'target' });
    expect(namingFlag(named, { target: 'x' })).toBe(named);
  });
});
