import { describe, expect, it } from 'vitest';
import { parseModeStr } from './mode.js';

const apply = (s: string, perm: number, isDir = false) => parseModeStr(s)(perm, isDir).toString(8);

describe('parseModeStr', () => {
  it('octal modes are absolute', () => {
    expect(apply('755', 0o600)).toBe('755');
    expect(apply('4755', 0o600)).toBe('4755');
  });

  it('symbolic clauses', () => {
    expect(apply('u+x', 0o644)).toBe('744');
    expect(apply('go-w', 0o666)).toBe('644');
    expect(apply('a=r', 0o777)).toBe('444');
    expect(apply('=rw', 0o777)).toBe('666');
    expect(apply('u=rwx,g=rx,o=', 0o000)).toBe('750');
    expect(apply('g=u', 0o640)).toBe('660');
    expect(apply('u+s,+t', 0o755)).toBe('5755');
  });

  it('X adds execute to directories and already-executable files only', () => {
    expect(apply('a+X', 0o644)).toBe('644');
    expect(apply('a+X', 0o744)).toBe('755');
    expect(apply('a+X', 0o644, true)).toBe('755');
  });

  it('rejects garbage, naming the mode', () => {
    expect(() => parseModeStr('u+q')).toThrow(/invalid mode "u\+q"/);
    expect(() => parseModeStr('999')).toThrow(/invalid mode/);
  });
});
