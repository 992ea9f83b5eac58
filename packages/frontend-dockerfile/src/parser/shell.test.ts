import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ShellLex, envFromList, envFromMap, reversePattern, reverseString, ShellPattern } from './shell.js';

const here = new URL('./testdata/shell/', import.meta.url);

describe('shell lexer: BuildKit envVarTest vectors', () => {
  const lex = new ShellLex('\\');
  const env = envFromList(['PWD=/home', 'SHELL=bash', 'KOREAN=한국어', 'NULL=']);
  const lines = readFileSync(new URL('envVarTest', here), 'utf8').split('\n');
  const cases = lines
    .map((line, i) => ({ line, n: i + 1 }))
    .filter(({ line }) => !line.startsWith('#') && line.trim() !== '')
    .map(({ line, n }) => {
      const [platform, source, expected] = line.trim().split('|').map((s) => s.trim());
      return { platform, source, expected, n };
    })
    .filter((c) => c.platform !== 'W');
  it('has the vectors', () => expect(cases.length).toBeGreaterThan(200));
  for (const c of cases) {
    it(`line ${c.n}: ${c.source}`, () => {
      if (c.expected === 'error') expect(() => lex.processWord(c.source, env)).toThrow();
      else expect(lex.processWord(c.source, env).result).toBe(c.expected);
    });
  }
});

describe('shell lexer: BuildKit wordsTest vectors', () => {
  const text = readFileSync(new URL('wordsTest', here), 'utf8');
  for (const mode of ['normal', 'onlySetEnv'] as const) {
    it(`splits words (${mode})`, () => {
      const lex = new ShellLex('\\', mode === 'onlySetEnv' ? { rawQuotes: true, skipUnsetEnv: true } : {});
      const envs: string[] = [];
      let checked = 0;
      for (const line of text.split('\n')) {
        if (line.startsWith('#') || line === '') continue;
        if (line.startsWith('ENV ')) {
          envs.push(line.slice(3).replace(/^ +/, ''));
          continue;
        }
        const parts = line.split('|');
        expect(parts).toHaveLength(2);
        const test = parts[0].trim();
        const expected = parts[1].replace(/^ +/, '').split(',');
        let result: string[];
        try {
          result = lex.processWords(test, envFromList(envs));
        } catch {
          result = ['error'];
        }
        // BuildKit runs the second mode on an exhausted scanner: only the first mode checks anything.
        if (mode === 'normal') expect(result, `${test}`).toEqual(expected);
        checked++;
      }
      expect(checked).toBeGreaterThan(20);
    });
  }
});

describe('shell lexer: substitutions and matches', () => {
  const lex = new ShellLex('\\');
  const cases: Array<{ input: string; envs: Record<string, string>; expected?: string; err?: boolean; matches?: string[]; unmatched?: string[] }> = [
    { input: 'x', envs: { DUMMY: 'dummy' }, expected: 'x' },
    { input: 'x ${UNUSED}', envs: { DUMMY: 'dummy' }, expected: 'x ', unmatched: ['UNUSED'] },
    { input: 'x ${FOO}', envs: { FOO: 'y' }, expected: 'x y', matches: ['FOO'] },
    { input: '${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}', envs: { FOO: 'xxx', BAR: '' }, expected: 'xxx  ccc', matches: ['FOO', 'BAR'], unmatched: ['BAZ'] },
    { input: '${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}', envs: { FOO: 'xxx', BAR: '' }, expected: 'xxx bbb ccc', matches: ['FOO', 'BAR'], unmatched: ['BAZ'] },
    { input: '${FOO:-}', envs: {}, expected: '', unmatched: ['FOO'] },
    { input: '${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}', envs: { FOO: 'xxx', BAR: '' }, expected: 'aaa bbb ', matches: ['FOO', 'BAR'], unmatched: ['BAZ'] },
    { input: '${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}', envs: { FOO: 'xxx', BAR: '' }, expected: 'aaa  ', matches: ['FOO', 'BAR'], unmatched: ['BAZ'] },
    { input: '${FOO?aaa}', envs: { FOO: 'xxx' }, expected: 'xxx', matches: ['FOO'] },
    { input: '${BAR?bbb}', envs: { BAR: '' }, expected: '', matches: ['BAR'] },
    { input: '${BAZ?ccc}', envs: {}, err: true },
    { input: '${BAR:?bbb}', envs: { BAR: '' }, err: true },
    { input: '${BAZ:?}', envs: {}, err: true },
    { input: '${FOO=aaa}', envs: { FOO: 'xxx' }, err: true },
    { input: '${FOO=:aaa}', envs: { FOO: 'xxx' }, err: true },
    { input: '${FOO=}', envs: {}, err: true },
    { input: '${FOO#()[]{\\}^$.\\*\\?|\\\\}', envs: { FOO: '()[]{}^$.*?|\\x' }, expected: 'x', matches: ['FOO'] },
    { input: '${FOO%%\\**}', envs: { FOO: 'xx**' }, expected: 'xx' },
    { input: '${FOO#*x*y}', envs: { FOO: 'xxyy' }, expected: 'y' },
    { input: '${FOO#*}', envs: { FOO: 'xxyy' }, expected: 'xxyy' },
    { input: '${FOO#$BAR}', envs: { FOO: 'xxyy', BAR: 'x' }, expected: 'xyy', matches: ['FOO', 'BAR'] },
    { input: '${FOO#$BAR}', envs: { FOO: 'xxyy', BAR: '' }, expected: 'xxyy' },
    { input: '${FOO#}', envs: { FOO: 'xxyy' }, expected: 'xxyy' },
    { input: '${FOO##*x}', envs: { FOO: 'xxyy' }, expected: 'yy' },
    { input: '${FOO##}', envs: { FOO: 'xxyy' }, expected: 'xxyy' },
    { input: '${FOO#?\\?}', envs: { FOO: '???y' }, expected: '?y' },
    { input: '${ABC:-.}${FOO%x}${ABC:-.}', envs: { FOO: 'xxyy' }, expected: '.xxyy.', matches: ['FOO'], unmatched: ['ABC'] },
    { input: '${FOO%%\\**\\*}', envs: { FOO: 'a***yy*' }, expected: 'a' },
    { input: '${FOO%}', envs: { FOO: 'xxyy' }, expected: 'xxyy' },
    { input: '${FOO%y}', envs: { FOO: 'xxyy' }, expected: 'xxy' },
    { input: '${FOO%%y*}', envs: { FOO: 'xyxy' }, expected: 'x' },
    { input: '${FOO%y*}', envs: { FOO: 'xyxy' }, expected: 'xyx' },
    { input: '${FOO:#}', envs: {}, err: true },
    { input: '${FOO:##}', envs: {}, err: true },
    { input: '${FOO:%}', envs: {}, err: true },
    { input: '${FOO:%%}', envs: {}, err: true },
    { input: '${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}', envs: { FOO: '/foo*/*/*.txt', NEEDLE: '\\*/' }, expected: '/foo.*/*.txt - /foo..*.txt' },
    { input: '${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}', envs: { FOO: '/tmp/tmp/bar.txt', NEEDLE: '/tmp' }, expected: '/tmp/bar.txt - /bar.txt' },
    { input: '${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}', envs: { FOO: '/a/foo/b/c.txt', NEEDLE: '/?/', REPLACEMENT: '/' }, expected: '/foo/b/c.txt - /foo/c.txt' },
    { input: '${FOO/$NEEDLE/$REPLACEMENT}', envs: { FOO: 'http://google.de', NEEDLE: 'http://', REPLACEMENT: 'https://' }, expected: 'https://google.de' },
    { input: '${FOO//\\//\\/}', envs: { FOO: '/tmp/foo.txt' }, expected: '\\/tmp\\/foo.txt' },
    { input: '${FOO/$BAR/ww}', envs: { FOO: 'xxyy', BAR: '' }, expected: 'wwxxyy' },
    { input: '${FOO//ww}', envs: { FOO: 'xxyy' }, err: true },
    { input: '${FOO//}', envs: { FOO: 'xxyy' }, err: true },
    { input: '${FOO///}', envs: { FOO: 'xxyy' }, expected: 'xxyy' },
    { input: '${FOO///}', envs: {}, expected: '', unmatched: ['FOO'] },
    { input: '${FOO//a*/X}', envs: { FOO: 'baaac' }, expected: 'bX' },
    { input: '${FOO//x/$$}', envs: { FOO: 'axa' }, expected: 'aa', unmatched: ['$'] },
    { input: '${FOO//x/$R}', envs: { FOO: 'axa', R: '<$$$0>' }, expected: 'a<$x>a' },
  ];
  for (const c of cases) {
    it(`${c.input} with ${JSON.stringify(c.envs)}`, () => {
      const env = envFromMap(c.envs);
      if (c.err) {
        expect(() => lex.processWord(c.input, env)).toThrow();
        return;
      }
      const r = lex.processWord(c.input, env);
      expect(r.result).toBe(c.expected);
      if (c.matches) expect([...r.matched].sort()).toEqual([...c.matches].sort());
      if (c.unmatched) expect([...r.unmatched].sort()).toEqual([...c.unmatched].sort());
      if (!c.unmatched) expect(r.unmatched.size).toBe(0);
    });
  }

  it('reports ${V:?msg} and ${V?msg} with the expanded message', () => {
    expect(lex.processWord('${VAR:?message here$ARG}', envFromList(['VAR=plain', 'ARG=x'])).result).toBe('plain');
    expect(() => lex.processWord('${VAR:?message here$ARG}', envFromList(['VAR=', 'ARG=x']))).toThrow('message herex');
    expect(() => lex.processWord('${VAR:?message here$ARG}', envFromList(['ARG=x']))).toThrow('message herex');
    expect(lex.processWord('${VAR?message here$ARG}', envFromList(['VAR=', 'ARG=x'])).result).toBe('');
    expect(() => lex.processWord('${VAR?message here$ARG}', envFromList(['ARG=x']))).toThrow('VAR: message herex');
  });

  it('expands the platform release-name idiom', () => {
    const w = 'something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz';
    expect(lex.processWord(w, envFromMap({ VERSION: 'v1.2.3', TARGETOS: 'linux', TARGETARCH: 'arm', TARGETVARIANT: 'v7' })).result).toBe('something-v1.2.3.linux-arm-v7.tar.gz');
    expect(lex.processWord(w, envFromMap({ VERSION: 'v1.2.3', TARGETOS: 'linux', TARGETARCH: 'arm64', TARGETVARIANT: '' })).result).toBe('something-v1.2.3.linux-arm64.tar.gz');
    expect(lex.processWord(w, envFromMap({ VERSION: 'v1.2.3', TARGETOS: 'linux', TARGETARCH: 'arm64' })).result).toBe('something-v1.2.3.linux-arm64.tar.gz');
  });

  it('uses the backtick as escape when asked', () => {
    const bt = new ShellLex('`');
    expect(bt.processWord('a`$B c\\d', envFromList(['B=x'])).result).toBe('a$B c\\d');
    expect(bt.processWord('"a`"b"', emptyEnvForTest()).result).toBe('a"b');
  });

  it('keeps unset references with skipUnsetEnv', () => {
    const l = new ShellLex('\\', { skipUnsetEnv: true });
    expect(l.processWord('$A ${B} ${C:-x} ${D/a/b} $E', envFromList(['E=e'])).result).toBe('$A ${B} ${C:-x} ${D/a/b} e');
  });

  it('leaves quotes alone with skipProcessQuotes', () => {
    const l = new ShellLex('\\', { skipProcessQuotes: true });
    expect(l.processWord(`'$A' "$A"`, envFromList(['A=1'])).result).toBe(`'1' "1"`);
  });
});

describe('shell patterns', () => {
  it('converts to regular expressions', () => {
    const chars = (s: string) => Array.from(s);
    expect(new ShellPattern('*').matchAt(chars('anything'), 0, true)).toBe(8);
    expect(new ShellPattern('*').matchAt(chars('anything'), 0, false)).toBe(0);
    expect(new ShellPattern('\\*').matchAt(chars('x'), 0, true)).toBe(-1);
    expect(new ShellPattern('\\*').matchAt(chars('*x'), 0, true)).toBe(1);
    expect(new ShellPattern('*').matchAt(chars('ab\ncd'), 0, true)).toBe(2);
    expect(new ShellPattern('(()[]{\\}^$.\\*\\?|\\\\').matchAt(chars('(()[]{}^$.*?|\\x'), 0, true)).toBe(14);
    for (const bad of ['\\', '\\x', '\\\\\\']) expect(() => new ShellPattern(bad)).toThrow();
  });
  it('match hostile patterns in polynomial time', () => {
    const lex = new ShellLex('\\');
    const value = 'a'.repeat(3000);
    const t0 = Date.now();
    expect(lex.processWord('${V#*a*a*a*a*a*a*a*a*b}', envFromMap({ V: value })).result).toBe(value);
    expect(lex.processWord('${V//*a*a*a*b/x}', envFromMap({ V: value.slice(0, 300) })).result).toBe(value.slice(0, 300));
    expect(Date.now() - t0).toBeLessThan(30_000); // exponential backtracking would take hours; generous for loaded machines
  });
  it('reverses strings and patterns', () => {
    expect(reverseString('🖖🚀👽')).toBe('👽🚀🖖');
    expect(reversePattern('a\\*c')).toBe('c\\*a');
    expect(reversePattern('\\\\\\ab')).toBe('b\\a\\\\');
    expect(reversePattern('ab\\')).toBe('\\ba');
    expect(reversePattern('\\\\b')).toBe('b\\\\');
  });
});

function emptyEnvForTest() {
  return envFromList([]);
}
