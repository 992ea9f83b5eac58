import { describe, expect, it } from 'vitest';
import { image, scratch } from './index.js';

describe('State', () => {
  it('is immutable: methods return new states', () => {
    const a = scratch();
    const b = a.env('K', 'v').dir('/app').user('me').hostname('h');
    expect(a.getEnv('K')).toBeUndefined();
    expect(a.getDir()).toBe('/');
    expect(b.getEnv('K')).toBe('v');
    expect([b.getDir(), b.getUser(), b.getHostname()]).toEqual(['/app', 'me', 'h']);
  });

  it('resolves a relative dir against the current one', () => {
    expect(scratch().dir('/a').dir('b/../c').dir('./d').getDir()).toBe('/a/c/d');
    expect(scratch().dir('x').getDir()).toBe('/x');
  });

  it('keeps env in Go EnvList order: setting a key again moves it last', () => {
    const s = scratch().env('A', '1').env('B', '2').env('A', '3').env('C', '4').delEnv('B');
    expect(s.envList()).toEqual(['A=3', 'C=4']);
  });

  it('applies an image config (env, workdir, platform)', () => {
    const cfg = JSON.stringify({
      architecture: 'arm64',
      os: 'linux',
      config: { Env: ['PATH=/usr/bin:/bin', 'EMPTY=', 'NOVALUE'], WorkingDir: '/srv' },
    });
    const s = image('busybox').withImageConfig(cfg);
    expect(s.envList()).toEqual(['PATH=/usr/bin:/bin', 'EMPTY=', 'NOVALUE=']);
    expect(s.getDir()).toBe('/srv');
    expect(s.getPlatform()).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(() => scratch().withImageConfig('{')).toThrow(/not valid JSON/);
  });

  it('carries network, security, hosts, ulimits and exit codes as values', () => {
    const s = scratch().network('host').security('insecure').addExtraHost('a', '1.2.3.4').addUlimit('nproc', 1, 2).validExitCodes(0, 3);
    expect(s.getNetwork()).toBe('host');
    expect(s.getSecurity()).toBe('insecure');
    expect(s.meta.extraHosts).toEqual([{ host: 'a', ip: '1.2.3.4' }]);
    expect(s.meta.ulimits).toEqual([{ name: 'nproc', soft: 1, hard: 2 }]);
    expect(s.meta.validExitCodes).toEqual([0, 3]);
    expect(scratch().getNetwork()).toBe('sandbox');
  });
});
