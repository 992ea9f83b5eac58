import { describe, expect, it } from 'vitest';
import { cleanRelPath, compilePatterns, parseDockerignore } from './patterns.js';

const m = (patterns: string[]) => compilePatterns(patterns);

describe('compilePatterns', () => {
  it('matches * and ? within one segment only', () => {
    const pm = m(['*.txt', 'a?c']);
    expect(pm.matches('x.txt')).toBe(true);
    expect(pm.matches('abc')).toBe(true);
    expect(pm.matches('abbc')).toBe(false);
    expect(pm.matches('dir/x.txt')).toBe(false);
    expect(pm.matches('x.txt.bak')).toBe(false);
  });

  it('a pattern matching a directory matches its contents', () => {
    const pm = m(['node_modules']);
    expect(pm.matches('node_modules')).toBe(true);
    expect(pm.matches('node_modules/a/b.js')).toBe(true);
    expect(pm.matches('src/node_modules')).toBe(false);
  });

  it('** spans any number of segments, including none', () => {
    const pm = m(['**/*.go']);
    expect(pm.matches('a.go')).toBe(true);
    expect(pm.matches('x/y/z.go')).toBe(true);
    expect(pm.matches('x/y/z.goo')).toBe(false);
    const mid = m(['a/**/b']);
    expect(mid.matches('a/b')).toBe(true);
    expect(mid.matches('a/x/y/b')).toBe(true);
    expect(mid.matches('a/x/y/c')).toBe(false);
    const tail = m(['a/**']);
    expect(tail.matches('a/x')).toBe(true);
    expect(tail.matches('ab')).toBe(false);
  });

  it('character classes, negated classes and escapes', () => {
    const pm = m(['[a-c].txt', 'n[^0-9]', 'lit\\*']);
    expect(pm.matches('b.txt')).toBe(true);
    expect(pm.matches('d.txt')).toBe(false);
    expect(pm.matches('nx')).toBe(true);
    expect(pm.matches('n5')).toBe(false);
    expect(pm.matches('lit*')).toBe(true);
    expect(pm.matches('litx')).toBe(false);
  });

  it('regex metacharacters are literal', () => {
    const pm = m(['a.b', 'c+(d)|e$']);
    expect(pm.matches('a.b')).toBe(true);
    expect(pm.matches('axb')).toBe(false);
    expect(pm.matches('c+(d)|e$')).toBe(true);
  });

  it('! re-includes, the last matching pattern decides', () => {
    const pm = m(['*.md', '!README.md', 'docs', '!docs/keep.md']);
    expect(pm.matches('a.md')).toBe(true);
    expect(pm.matches('README.md')).toBe(false);
    expect(pm.matches('docs/x')).toBe(true);
    expect(pm.matches('docs/keep.md')).toBe(false);
    const again = m(['!a', 'a']);
    expect(again.matches('a')).toBe(true);
  });

  it('cleans leading / and ./, trailing /, whitespace', () => {
    const pm = m(['  /build/ ', './out//x', '']);
    expect(pm.patterns.map((p) => p.text)).toEqual(['build', 'out/x']);
    expect(pm.matches('build/a')).toBe(true);
    expect(pm.matches('./out/x')).toBe(true);
  });

  it('rejects a lone ! and bad classes', () => {
    expect(() => m(['!'])).toThrow(/illegal exclusion/);
    expect(() => m(['[abc'])).toThrow(/unterminated/);
  });

  it('canSkipDir only when no exclusion can reach inside', () => {
    expect(m(['build']).canSkipDir('build')).toBe(true);
    expect(m(['build']).canSkipDir('src')).toBe(false);
    expect(m(['build', '!build/keep']).canSkipDir('build')).toBe(false);
    expect(m(['build', '!other/keep']).canSkipDir('build')).toBe(true);
    expect(m(['build', '!**/keep']).canSkipDir('build')).toBe(false);
  });

  it('mayMatchUnder tells whether an include pattern reaches below a dir', () => {
    const pm = m(['src/*/main.ts']);
    expect(pm.mayMatchUnder('src')).toBe(true);
    expect(pm.mayMatchUnder('src/app')).toBe(true);
    expect(pm.mayMatchUnder('lib')).toBe(false);
    expect(pm.mayMatchUnder('src/app/main.ts')).toBe(false);
    expect(m(['**/x']).mayMatchUnder('any/where')).toBe(true);
  });
});

describe('parseDockerignore', () => {
  it('drops comments and blanks, trims, cleans, keeps !', () => {
    const text = '# comment\n\n  node_modules  \r\n/dist/\n!./dist/keep\n./a/../b\n   # indented comment\n';
    expect(parseDockerignore(text)).toEqual(['node_modules', 'dist', '!dist/keep', 'b']);
  });
});

describe('cleanRelPath', () => {
  it('cleans like path.Clean, relative', () => {
    expect(cleanRelPath('a//b/./c/')).toBe('a/b/c');
    expect(cleanRelPath('a/../..')).toBe('..');
    expect(cleanRelPath('/../x')).toBe('x');
    expect(cleanRelPath('')).toBe('.');
  });
});
