/**
 * Docker-style path patterns, with the semantics of moby/patternmatcher (the
 * matcher behind `.dockerignore`, the `local` source's include/exclude and
 * FileOp copy's include/exclude):
 *
 * - `*` any run of characters but `/`; `?` one character but `/`; `[...]` a
 *   character class (`[^...]` negated); `\` escapes the next character;
 * - `**` any number of path segments, including none (`**` / `**\/x` / `a/**`);
 * - a pattern matching a directory matches everything under it;
 * - a pattern starting with `!` re-includes what earlier patterns matched;
 *   the last matching pattern decides;
 * - patterns are trimmed and cleaned like paths (`./a//b/` → `a/b`, leading `/` dropped).
 *
 * Paths given to a matcher are relative to the matched root, `/`-separated.
 */
import { BktError } from '@bkt/core';

/** One compiled pattern. */
export interface Pattern {
  /** The cleaned pattern text, without its `!`. */
  readonly text: string;
  /** True for a `!` pattern. */
  readonly exclusion: boolean;
  /** The pattern split on `/`. */
  readonly segments: readonly string[];
  /** Whether the whole relative path matches this pattern (no parent rule). */
  matchesExactly(relPath: string): boolean;
}

export interface PatternMatcher {
  readonly patterns: readonly Pattern[];
  /** True when there is at least one `!` pattern. */
  readonly hasExclusions: boolean;
  /**
   * Whether `relPath` is matched: by itself or through a parent directory,
   * with the last matching pattern (plain or `!`) deciding.
   */
  matches(relPath: string): boolean;
  /**
   * For an exclude matcher: true when `relDir` is matched and no `!` pattern
   * could re-include anything under it, so a walk may skip the whole directory.
   */
  canSkipDir(relDir: string): boolean;
  /**
   * For an include matcher: whether some non-`!` pattern could match a path
   * strictly under `relDir` (so a walk must descend into an unmatched directory).
   */
  mayMatchUnder(relDir: string): boolean;
}

/** Lexically cleans a path like Go's `path.Clean`, returning a relative form (`.` for the root). */
export function cleanRelPath(p: string): string {
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!p.startsWith('/')) out.push('..');
      continue;
    }
    out.push(seg);
  }
  return out.length === 0 ? '.' : out.join('/');
}

const REGEX_SPECIAL = new Set(['.', '+', '(', ')', '|', '{', '}', '$', '^']);

/** Translates one pattern to an anchored regular expression source. */
function patternToRegex(pattern: string, where: string): string {
  let re = '^';
  let i = 0;
  while (i < pattern.length) {
    const ch = pattern[i]!;
    if (ch === '*') {
      if (pattern[i + 1] === '*') {
        i += 2;
        if (pattern[i] === '/') i++;
        // `**` at the end matches everything; elsewhere any number of whole segments.
        re += i >= pattern.length ? '.*' : '(?:.*/)?';
        continue;
      }
      re += '[^/]*';
    } else if (ch === '?') {
      re += '[^/]';
    } else if (ch === '\\') {
      const next = pattern[i + 1];
      if (next === undefined) re += '\\\\';
      else {
        re += /[A-Za-z0-9]/.test(next) ? next : '\\' + next;
        i++;
      }
    } else if (ch === '[') {
      const end = findClassEnd(pattern, i);
      if (end < 0) throw new BktError('INVALID_ARGUMENT', `bad pattern "${pattern}"${where}: unterminated character class`);
      let body = pattern.slice(i + 1, end);
      let negate = false;
      if (body.startsWith('^') || body.startsWith('!')) {
        negate = true;
        body = body.slice(1);
      }
      if (body === '') throw new BktError('INVALID_ARGUMENT', `bad pattern "${pattern}"${where}: empty character class`);
      // Inside a class only `\`, `]`, `[` and `^` are special for JS; `-` keeps its range meaning.
      const escaped = body.replace(/\\(.)|([\[\]^])/g, (_m, esc: string | undefined, sp: string | undefined) =>
        esc !== undefined ? '\\' + esc : '\\' + sp,
      );
      re += `[${negate ? '^/' : ''}${escaped}]`;
      i = end;
    } else if (ch === ']') {
      throw new BktError('INVALID_ARGUMENT', `bad pattern "${pattern}"${where}: unmatched "]"`);
    } else if (REGEX_SPECIAL.has(ch)) {
      re += '\\' + ch;
    } else {
      re += ch;
    }
    i++;
  }
  return re + '$';
}

function findClassEnd(pattern: string, start: number): number {
  let j = start + 1;
  if (pattern[j] === '^' || pattern[j] === '!') j++;
  for (; j < pattern.length; j++) {
    if (pattern[j] === '\\') j++;
    else if (pattern[j] === ']') return j;
  }
  return -1;
}

/** Compiles one pattern (may start with `!`). Returns null for an empty pattern. */
export function compilePattern(raw: string, where = ''): Pattern | null {
  let p = raw.trim();
  if (p === '') return null;
  let exclusion = false;
  if (p.startsWith('!')) {
    exclusion = true;
    p = p.slice(1).trim();
    if (p === '') throw new BktError('INVALID_ARGUMENT', `illegal exclusion pattern "!"${where}`);
  }
  const text = cleanRelPath(p.replace(/^\/+/, ''));
  const re = new RegExp(patternToRegex(text, where), 's');
  const segments = text.split('/');
  return {
    text,
    exclusion,
    segments,
    matchesExactly: (relPath: string) => re.test(relPath),
  };
}

/** Each pattern's segments compiled on their own (made on first use). */
const segmentMatchers = new WeakMap<Pattern, (Pattern | null)[]>();

/** A matcher over a segment-prefix of a path: could `pattern` match something below `dirSegs`? */
function patternMayMatchUnder(pattern: Pattern, dirSegs: string[]): boolean {
  const segs = pattern.segments;
  let matchers = segmentMatchers.get(pattern);
  if (!matchers) segmentMatchers.set(pattern, (matchers = []));
  for (let k = 0; k < dirSegs.length; k++) {
    const s = segs[k];
    if (s === undefined) return false; // the pattern is shorter: it matches the dir or a parent, handled by matches()
    if (s.includes('**')) return true;
    if (matchers[k] === undefined) matchers[k] = compilePattern(s);
    const one = matchers[k];
    if (!one || !one.matchesExactly(dirSegs[k]!)) return false;
  }
  return segs.length > dirSegs.length;
}

/** Compiles a list of patterns (as given to `.dockerignore`, `--exclude`, FileOp copy). */
export function compilePatterns(patterns: readonly string[], where = ''): PatternMatcher {
  const compiled: Pattern[] = [];
  for (const raw of patterns) {
    const p = compilePattern(raw, where);
    if (p) compiled.push(p);
  }
  const hasExclusions = compiled.some((p) => p.exclusion);

  const matches = (relPath: string): boolean => {
    const path = cleanRelPath(relPath);
    if (path === '.') return false;
    const parts = path.split('/');
    let matched = false;
    for (const pattern of compiled) {
      // Only a pattern that could change the verdict needs evaluating.
      if (pattern.exclusion !== matched) continue;
      let hit = pattern.matchesExactly(path);
      for (let i = 1; !hit && i < parts.length; i++) {
        hit = pattern.matchesExactly(parts.slice(0, i).join('/'));
      }
      if (hit) matched = !pattern.exclusion;
    }
    return matched;
  };

  return {
    patterns: compiled,
    hasExclusions,
    matches,
    canSkipDir(relDir: string): boolean {
      if (!matches(relDir)) return false;
      if (!hasExclusions) return true;
      const dirSegs = cleanRelPath(relDir).split('/');
      return !compiled.some((p) => p.exclusion && patternMayMatchUnder(p, dirSegs));
    },
    mayMatchUnder(relDir: string): boolean {
      const dir = cleanRelPath(relDir);
      if (dir === '.') return compiled.some((p) => !p.exclusion);
      const dirSegs = dir.split('/');
      return compiled.some((p) => !p.exclusion && patternMayMatchUnder(p, dirSegs));
    },
  };
}

/**
 * Parses `.dockerignore` text into patterns: one per line, `#` comment lines
 * and blank lines dropped, surrounding whitespace trimmed, `!` kept, leading
 * `/` and `./` cleaned.
 */
export function parseDockerignore(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    let p = line.trim();
    if (p === '' || p.startsWith('#')) continue;
    let neg = '';
    if (p.startsWith('!')) {
      neg = '!';
      p = p.slice(1).trim();
    }
    p = cleanRelPath(p.replace(/^\/+/, ''));
    if (p === '.' && neg === '') continue;
    out.push(neg + p);
  }
  return out;
}
