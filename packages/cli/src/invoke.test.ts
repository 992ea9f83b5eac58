import { isBktError } from '@bkt/core';
import { describe, expect, it } from 'vitest';
import { debugConfig, parseInvoke } from './invoke.js';

describe('parseInvoke (--invoke, as buildx)', () => {
  it('takes a command line, run in the result', () => {
    expect(parseInvoke('sh')).toEqual({ onResult: true, onError: false, args: ['sh'], env: [] });
    expect(parseInvoke('ls -la /')).toEqual({ onResult: true, onError: false, args: ['ls', '-la', '/'], env: [] });
  });

  it('knows on-error, default and debug-shell', () => {
    expect(parseInvoke('on-error')).toEqual({ onResult: false, onError: true, env: [] });
    expect(parseInvoke('default')).toEqual({ onResult: true, onError: false, env: [] });
    expect(parseInvoke('debug-shell')).toEqual({ onResult: true, onError: false, env: [] });
  });

  it('takes KEY=VALUE fields', () => {
    expect(parseInvoke('args=sh -l,env=A=1,env=B=2,user=1000:1000,cwd=/src,tty=false,on=always')).toEqual({
      onResult: true,
      onError: true,
      args: ['sh', '-l'],
      env: ['A=1', 'B=2'],
      user: '1000:1000',
      cwd: '/src',
      tty: false,
    });
    expect(parseInvoke('entrypoint=/bin/busybox,args=sh,on=error')).toMatchObject({ onResult: false, onError: true, entrypoint: ['/bin/busybox'], args: ['sh'] });
  });

  it('names what is wrong', () => {
    for (const [value, want] of [
      ['', /empty value/],
      ['args=sh,color=red', /unknown key "color"/],
      ['tty=maybe', /tty=maybe/],
      ['on=sometimes', /on=sometimes/],
      ['env=NOVALUE', /env=NOVALUE/],
    ] as const) {
      expect(() => parseInvoke(value)).toThrow(want);
      try {
        parseInvoke(value);
      } catch (err) {
        expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
      }
    }
  });
});

describe('debugConfig (bkt debug --on)', () => {
  it('opens a shell on error by default, in the result too with always', () => {
    expect(debugConfig(undefined, undefined)).toEqual({ onResult: false, onError: true, env: [] });
    expect(debugConfig('always', 'bash')).toEqual({ onResult: true, onError: true, args: ['bash'], env: [] });
    expect(() => debugConfig('never', undefined)).toThrow(/--on never/);
  });
});
